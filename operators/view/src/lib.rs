//! The built-in `view` operator: [`sabot_operators::view::View`] as an agent. See that module
//! for the configuration. It has no output: its rows are read over HTTP.

use sabot_operators::view::{View, ViewConfig};
use sabot_sdk::{Agent, AgentError, Config, Emitter, RecordBatch};

/// The built-in `view` operator.
pub struct ViewOperator {
    view: View,
}

impl Agent for ViewOperator {
    fn init(config: Config) -> Result<Self, AgentError> {
        let config: ViewConfig = config.parse()?;
        Ok(ViewOperator {
            view: View::new(config),
        })
    }

    fn process(
        &mut self,
        _port: u32,
        batch: RecordBatch,
        _out: &mut Emitter,
    ) -> Result<(), AgentError> {
        self.view.process(&batch)
    }
}

sabot_sdk::export_agent!(ViewOperator);
