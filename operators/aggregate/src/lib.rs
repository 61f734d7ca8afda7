//! The built-in `aggregate` operator: [`sabot_operators::updating::UpdatingAggregate`] as an
//! agent. See that module for the configuration.

use sabot_operators::updating::{AggregateConfig, UpdatingAggregate};
use sabot_sdk::{Agent, AgentError, Config, Emitter, RecordBatch};

/// The built-in `aggregate` operator.
pub struct AggregateOperator {
    groups: UpdatingAggregate,
}

impl Agent for AggregateOperator {
    fn init(config: Config) -> Result<Self, AgentError> {
        let config: AggregateConfig = config.parse()?;
        Ok(AggregateOperator {
            groups: UpdatingAggregate::new("aggregate", config)?,
        })
    }

    fn process(
        &mut self,
        _port: u32,
        batch: RecordBatch,
        out: &mut Emitter,
    ) -> Result<(), AgentError> {
        self.groups.process(&batch, out)
    }
}

sabot_sdk::export_agent!(AggregateOperator);
