//! The built-in `window` operator: [`sabot_operators::window::Windows`] as an agent. See that
//! module for the configuration.

use sabot_operators::window::Windows;
use sabot_sdk::timers::Timer;
use sabot_sdk::{Agent, AgentError, Config, Emitter, RecordBatch};

/// The built-in `window` operator.
pub struct WindowOperator {
    windows: Windows,
}

impl Agent for WindowOperator {
    fn init(config: Config) -> Result<Self, AgentError> {
        let config: sabot_operators::window::WindowConfig = config.parse()?;
        if config.aggregates.is_empty() {
            return Err(AgentError::invalid_config(
                "aggregates is empty: name at least one, e.g. [\"count(*)\"]",
            ));
        }
        Ok(WindowOperator {
            windows: Windows::new("window", config)?,
        })
    }

    fn process(
        &mut self,
        _port: u32,
        batch: RecordBatch,
        out: &mut Emitter,
    ) -> Result<(), AgentError> {
        self.windows.process(&batch, out)
    }

    fn on_timers(&mut self, timers: Vec<Timer>, out: &mut Emitter) -> Result<(), AgentError> {
        self.windows.on_timers(&timers, out)
    }
}

sabot_sdk::export_agent!(WindowOperator);
