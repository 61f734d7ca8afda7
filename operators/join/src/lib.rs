//! The built-in `join` operator: [`sabot_operators::join::Join`] as an agent, or
//! [`sabot_operators::join::GroupedJoin`] when its config names `aggregates`. See those for the
//! configuration.

use sabot_operators::join::{GroupedJoin, Join, JoinConfig};
use sabot_sdk::timers::Timer;
use sabot_sdk::{Agent, AgentError, Config, Emitter, RecordBatch};

/// The built-in `join` operator.
pub enum JoinOperator {
    /// Emits the joined pairs.
    Pairs(Join),
    /// Folds each key's pairs into aggregates.
    Grouped(GroupedJoin),
}

impl Agent for JoinOperator {
    fn init(config: Config) -> Result<Self, AgentError> {
        let config: JoinConfig = config.parse()?;
        Ok(if config.aggregates.is_some() {
            JoinOperator::Grouped(GroupedJoin::new("join", config)?)
        } else {
            JoinOperator::Pairs(Join::new("join", config)?)
        })
    }

    fn process(
        &mut self,
        port: u32,
        batch: RecordBatch,
        out: &mut Emitter,
    ) -> Result<(), AgentError> {
        match self {
            JoinOperator::Pairs(join) => join.process(port, &batch, out),
            JoinOperator::Grouped(join) => join.process(port, &batch, out),
        }
    }

    fn on_timers(&mut self, timers: Vec<Timer>, out: &mut Emitter) -> Result<(), AgentError> {
        match self {
            JoinOperator::Pairs(join) => join.on_timers(&timers, out),
            JoinOperator::Grouped(join) => join.on_timers(&timers, out),
        }
    }
}

sabot_sdk::export_agent!(JoinOperator);
