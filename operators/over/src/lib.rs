//! The built-in `over` operator: [`sabot_operators::over::Over`] as an agent. See that module
//! for the configuration.

use sabot_operators::over::{Over, OverConfig};
use sabot_sdk::timers::Timer;
use sabot_sdk::{Agent, AgentError, Config, Emitter, RecordBatch};

/// The built-in `over` operator.
pub struct OverOperator {
    over: Over,
}

impl Agent for OverOperator {
    fn init(config: Config) -> Result<Self, AgentError> {
        let config: OverConfig = config.parse()?;
        Ok(OverOperator {
            over: Over::new("over", config)?,
        })
    }

    fn process(
        &mut self,
        _port: u32,
        batch: RecordBatch,
        out: &mut Emitter,
    ) -> Result<(), AgentError> {
        self.over.process(&batch, out)
    }

    fn on_timers(&mut self, timers: Vec<Timer>, out: &mut Emitter) -> Result<(), AgentError> {
        self.over.on_timers(&timers, out)
    }
}

sabot_sdk::export_agent!(OverOperator);
