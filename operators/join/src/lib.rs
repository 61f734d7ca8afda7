//! The built-in `join` operator: [`sabot_operators::join::Join`] as an agent. See that module for
//! the configuration.

use sabot_operators::join::Join;
use sabot_sdk::timers::Timer;
use sabot_sdk::{Agent, AgentError, Config, Emitter, RecordBatch};

/// The built-in `join` operator.
pub struct JoinOperator {
    join: Join,
}

impl Agent for JoinOperator {
    fn init(config: Config) -> Result<Self, AgentError> {
        Ok(JoinOperator {
            join: Join::new("join", config.parse()?)?,
        })
    }

    fn process(
        &mut self,
        port: u32,
        batch: RecordBatch,
        out: &mut Emitter,
    ) -> Result<(), AgentError> {
        self.join.process(port, &batch, out)
    }

    fn on_timers(&mut self, timers: Vec<Timer>, out: &mut Emitter) -> Result<(), AgentError> {
        self.join.on_timers(&timers, out)
    }
}

sabot_sdk::export_agent!(JoinOperator);
