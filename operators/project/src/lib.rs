//! Built-in `project` operator: computes output columns from SQL expressions.
//!
//! ```toml
//! [agents.shape]
//! module = "builtin:project"
//! config = { select = ["txn_id", "amount * 0.92 AS amount_eur", "country"] }
//! ```
//!
//! `select` is a list of select items (or one string with a comma-separated list); `*` keeps every
//! input column. Expressions are described in [`sabot_expr`].
//!
//! On a [changelog](sabot_sdk::changelog), the `_op` column is kept (appended when `select`
//! does not name it), so that the output stays a changelog.

use sabot_expr::Projection;
use sabot_sdk::{Agent, AgentError, Config, Emitter, RecordBatch, changelog};

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Select {
    One(String),
    Many(Vec<String>),
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    select: Select,
}

/// Computes output columns.
pub struct Project {
    projection: Projection,
}

impl Agent for Project {
    fn init(config: Config) -> Result<Self, AgentError> {
        let settings: Settings = config.parse()?;
        let projection = match &settings.select {
            Select::One(text) => Projection::parse(text),
            Select::Many(items) if items.is_empty() => {
                return Err(AgentError::invalid_config(
                    "project `select` is empty (expected at least one column or expression)",
                ));
            }
            Select::Many(items) => Projection::parse_items(items),
        }
        .map_err(|e| AgentError::invalid_config(format!("project `select`: {e}")))?;
        Ok(Project { projection })
    }

    fn process(
        &mut self,
        _port: u32,
        batch: RecordBatch,
        out: &mut Emitter,
    ) -> Result<(), AgentError> {
        let projected = self
            .projection
            .apply(&batch)
            .map_err(|e| AgentError::invalid_input(format!("project: {e}")))?;
        match batch.column_by_name(changelog::OP_COLUMN) {
            Some(ops) if !changelog::is_changelog(&projected) => {
                let mut fields: Vec<_> = projected.schema().fields().iter().cloned().collect();
                fields.push(std::sync::Arc::new(
                    sabot_sdk::arrow::datatypes::Field::new(
                        changelog::OP_COLUMN,
                        ops.data_type().clone(),
                        false,
                    ),
                ));
                let mut columns = projected.columns().to_vec();
                columns.push(ops.clone());
                out.emit(RecordBatch::try_new(
                    std::sync::Arc::new(sabot_sdk::arrow::datatypes::Schema::new(fields)),
                    columns,
                )?);
            }
            _ => out.emit(projected),
        }
        Ok(())
    }
}

sabot_sdk::export_agent!(Project);
