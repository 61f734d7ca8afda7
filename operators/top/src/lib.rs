//! The built-in `top` operator: [`sabot_operators::top::Top`] as an agent. See that module for
//! the configuration.

use sabot_operators::top::{Top, TopConfig};
use sabot_sdk::timers::Timer;
use sabot_sdk::{Agent, AgentError, Config, Emitter, RecordBatch};

/// The built-in `top` operator.
pub struct TopOperator {
    top: Top,
}

impl Agent for TopOperator {
    fn init(config: Config) -> Result<Self, AgentError> {
        let config: TopConfig = config.parse()?;
        Ok(TopOperator {
            top: Top::new("top", config)?,
        })
    }

    fn process(
        &mut self,
        _port: u32,
        batch: RecordBatch,
        out: &mut Emitter,
    ) -> Result<(), AgentError> {
        self.top.process(&batch, out)
    }

    fn on_timers(&mut self, timers: Vec<Timer>, out: &mut Emitter) -> Result<(), AgentError> {
        self.top.on_timers(&timers, out)
    }
}

sabot_sdk::export_agent!(TopOperator);
