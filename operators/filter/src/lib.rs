//! Built-in `filter` operator: keeps the rows for which a SQL expression is true.
//!
//! ```toml
//! [agents.big]
//! module = "builtin:filter"
//! config = { where = "amount > 1000 AND country IN ('NG', 'KP')" }
//! ```
//!
//! Every input port is filtered with the same expression and emitted on output 0. The expression
//! language is described in [`sabot_expr`].

use sabot_expr::Predicate;
use sabot_sdk::{Agent, AgentError, Config, Emitter, RecordBatch};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// The predicate, e.g. `amount > 1000`.
    #[serde(rename = "where")]
    predicate: String,
}

/// Keeps the rows matching a predicate.
pub struct Filter {
    predicate: Predicate,
}

impl Agent for Filter {
    fn init(config: Config) -> Result<Self, AgentError> {
        let settings: Settings = config.parse()?;
        let predicate = Predicate::parse(&settings.predicate)
            .map_err(|e| AgentError::invalid_config(format!("filter `where`: {e}")))?;
        Ok(Filter { predicate })
    }

    fn process(
        &mut self,
        _port: u32,
        batch: RecordBatch,
        out: &mut Emitter,
    ) -> Result<(), AgentError> {
        let kept = self
            .predicate
            .filter(&batch)
            .map_err(|e| AgentError::invalid_input(format!("filter: {e}")))?;
        out.emit(kept);
        Ok(())
    }
}

sabot_sdk::export_agent!(Filter);
