//! `sabot sql`: an interactive shell for trying queries against sources.
//!
//! Statements end with `;` and may span lines. `CREATE TABLE`, `CREATE VIEW` and `SET` are
//! checked as they are typed and kept; a `SELECT` runs them as a pipeline whose output is a
//! bounded preview — the first `--rows` rows, or what arrived within `--timeout`, whichever
//! comes first — and then stops it. An updating query (`GROUP BY` without a window) previews
//! its result table as it stands when the run stops. `EXPLAIN SELECT …` prints the operator
//! graph instead; `SHOW TABLES` lists what was declared; `.quit` (or end of input) leaves.
//!
//! The preview is a real run (a file sink in a temporary directory, or a materialized view for
//! an updating query), so what the shell shows is what a pipeline would compute.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;

use crate::config::PipelineSpec;
use crate::dataflow::RunStats;
use crate::wasm::WasmRuntime;
use crate::{Error, Pipeline, RunOptions};

/// The name of the preview's sink or view: a name no user table takes.
const PREVIEW: &str = "sabot_preview";

/// How a shell previews queries.
pub struct Shell {
    runtime: Arc<WasmRuntime>,
    /// Where relative paths in declarations point: the working directory.
    dir: PathBuf,
    rows: usize,
    timeout: Duration,
    /// The declarations so far, in order.
    declarations: Vec<String>,
}

/// What one statement did.
enum Outcome {
    Text(String),
    Quit,
}

impl Shell {
    pub fn new(runtime: Arc<WasmRuntime>, dir: PathBuf, rows: usize, timeout: Duration) -> Self {
        Shell {
            runtime,
            dir,
            rows: rows.max(1),
            timeout,
            declarations: Vec::new(),
        }
    }

    /// Reads statements from `input` until it ends or `.quit`, answering each on `out`;
    /// `prompt` when the input is a terminal.
    pub fn run(
        &mut self,
        input: impl BufRead,
        out: &mut impl Write,
        prompt: bool,
    ) -> std::io::Result<()> {
        let mut pending = String::new();
        if prompt {
            write!(out, "sabot> ")?;
            out.flush()?;
        }
        for line in input.lines() {
            let line = line?;
            let trimmed = line.trim();
            if pending.trim().is_empty()
                && matches!(
                    trimmed.trim_end_matches(';'),
                    ".quit" | "quit" | "exit" | "\\q"
                )
            {
                return Ok(());
            }
            pending.push_str(&line);
            pending.push('\n');
            while let Some(end) = statement_end(&pending) {
                let statement = pending[..end].trim().to_owned();
                pending = pending[end + 1..].to_owned();
                if statement.is_empty() {
                    continue;
                }
                match self.statement(&statement) {
                    Outcome::Text(text) => writeln!(out, "{}", text.trim_end())?,
                    Outcome::Quit => return Ok(()),
                }
            }
            if prompt {
                write!(
                    out,
                    "{}",
                    if pending.trim().is_empty() {
                        "sabot> "
                    } else {
                        "   ...> "
                    }
                )?;
                out.flush()?;
            }
        }
        if !pending.trim().is_empty() {
            writeln!(
                out,
                "error: the input ended inside a statement (end it with `;`)"
            )?;
        }
        Ok(())
    }

    fn statement(&mut self, statement: &str) -> Outcome {
        let words: Vec<String> = statement
            .split_whitespace()
            .take(2)
            .map(str::to_ascii_uppercase)
            .collect();
        let first = words.first().map_or("", String::as_str);
        let second = words.get(1).map_or("", String::as_str);
        let text = match (first, second) {
            (".QUIT" | "QUIT" | "EXIT", _) => return Outcome::Quit,
            ("SHOW", "TABLES") => Ok(self.show_tables()),
            ("EXPLAIN", _) => self.explain(statement[first.len()..].trim()),
            ("SELECT" | "WITH" | "(", _) => self.preview(statement),
            ("CREATE" | "SET", _) => self.declare(statement),
            _ => Err(format!(
                "expected CREATE TABLE, CREATE VIEW, CREATE FUNCTION, SET, SELECT, EXPLAIN SELECT, SHOW TABLES or .quit; got `{}`",
                statement.lines().next().unwrap_or_default()
            )),
        };
        // Messages name the shell, not the file the statements were checked as.
        let file = self.file().display().to_string();
        Outcome::Text(text.unwrap_or_else(|e| format!("error: {}", e.replace(&file, "<shell>"))))
    }

    /// The statements' file in messages (`<shell>:LINE:COLUMN`, lines counted over the
    /// declarations so far and the statement); relative paths in them are relative to `dir`.
    fn file(&self) -> PathBuf {
        self.dir.join("<shell>.sql")
    }

    fn declare(&mut self, statement: &str) -> Result<String, String> {
        let mut text = self.declarations.join("\n");
        text.push('\n');
        text.push_str(statement);
        text.push(';');
        let functions = crate::wasm::function::local(&self.runtime, &self.dir);
        crate::config::check_sql(&text, &self.file(), Some(&functions))
            .map_err(|e| e.to_string())?;
        self.declarations.push(format!("{statement};"));
        Ok("ok".into())
    }

    /// The pipeline in `text`, its function calls type-checked.
    fn parse(&self, text: &str) -> Result<PipelineSpec, crate::config::ConfigError> {
        let functions = crate::wasm::function::local(&self.runtime, &self.dir);
        PipelineSpec::parse_with(text, &self.file(), &[], Some(&functions))
    }

    fn show_tables(&self) -> String {
        if self.declarations.is_empty() {
            return "no tables yet: CREATE TABLE name WITH ('connector' = 'generator', 'rate' = '1000');".into();
        }
        self.declarations.join("\n")
    }

    /// The pipeline of `query` into the preview: a file of Arrow batches, or (for an updating
    /// query) a materialized view.
    fn pipeline_text(&self, query: &str, out: &Path, updating: bool) -> String {
        let mut text = self.declarations.join("\n");
        if updating {
            text.push_str(&format!(
                "\nCREATE MATERIALIZED VIEW {PREVIEW} AS\n{query};"
            ));
        } else {
            text.push_str(&format!(
                "\nCREATE TABLE {PREVIEW} WITH ('connector' = 'file', 'path' = '{}', 'format' = 'arrow');\nINSERT INTO {PREVIEW}\n{query};",
                out.display().to_string().replace('\'', "''")
            ));
        }
        text
    }

    /// The spec of `query`'s pipeline, and whether it is updating.
    fn spec(&self, query: &str, out: &Path) -> Result<(PipelineSpec, bool), String> {
        let text = self.pipeline_text(query, out, false);
        match self.parse(&text) {
            Ok(spec) => Ok((spec, false)),
            Err(e) if e.to_string().contains("the query is updating") => {
                let text = self.pipeline_text(query, out, true);
                self.parse(&text)
                    .map(|spec| (spec, true))
                    .map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        }
    }

    fn explain(&self, query: &str) -> Result<String, String> {
        let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
        let (spec, _) = self.spec(query, &scratch.path().join("preview.arrow"))?;
        Ok(super::explain::text(&spec))
    }

    fn preview(&self, query: &str) -> Result<String, String> {
        let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = scratch.path().join("preview.arrow");
        let (spec, updating) = self.spec(query, &out)?;
        let stats = Arc::new(RunStats::for_pipeline(&spec));
        let pipeline = Pipeline::new(spec, self.runtime.clone()).map_err(|e| e.to_string())?;
        let live = Arc::new(pipeline.live());
        let options = RunOptions {
            stats: Some(stats.clone()),
            live: Some(live.clone()),
            ..RunOptions::default()
        };
        let stop = options.stop.clone();
        let started = Instant::now();
        let run = std::thread::spawn(move || pipeline.run(options));
        let mut reason = "the input ended";
        while !run.is_finished() {
            if started.elapsed() >= self.timeout {
                reason = "the time limit";
                stop.store(true, Ordering::Release);
                break;
            }
            if !updating && stats.events_out() >= self.rows as u64 {
                reason = "the row limit";
                stop.store(true, Ordering::Release);
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let summary = run
            .join()
            .map_err(|_| "the preview run panicked".to_owned())?
            .map_err(|e: Error| e.to_string())?;
        let stopped = if summary.interrupted {
            format!("stopped at {reason}")
        } else {
            "the input ended".to_owned()
        };
        let elapsed = format!("{:.1} s", started.elapsed().as_secs_f64());
        if updating {
            let rows = live
                .scan_store(
                    PREVIEW,
                    crate::serve::views::VIEW_ROWS,
                    None,
                    self.rows,
                    16 << 20,
                )
                .map_err(|e| e.to_string())?;
            let rows: Vec<serde_json::Value> = rows
                .iter()
                .filter_map(|e| serde_json::from_slice(&e.value).ok())
                .collect();
            return Ok(format!(
                "{}({} keys shown, the table as it stood when the run ended: {stopped}, {elapsed})",
                json_table(&rows),
                rows.len()
            ));
        }
        let batches = read_arrow(&out, self.rows)?;
        let total = summary.events_out;
        let shown = batches
            .iter()
            .map(RecordBatch::num_rows)
            .sum::<usize>()
            .min(self.rows);
        Ok(format!(
            "{}({shown} rows shown of {total} written; {stopped}, {elapsed})",
            arrow_table(&batches, self.rows)
        ))
    }
}

/// Where the first complete statement of `text` ends (its `;`), outside quotes and comments.
fn statement_end(text: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '-') if chars.peek().is_some_and(|(_, n)| *n == '-') => {
                // A comment, to the end of the line.
                for (_, c) in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            (None, ';') => return Some(i),
            _ => {}
        }
    }
    None
}

/// The first batches of the preview file, until they hold `rows` rows: the rest of the file
/// (up to the sink's budget) is never read into memory.
fn read_arrow(path: &Path, rows: usize) -> Result<Vec<RecordBatch>, String> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let reader = arrow_ipc::reader::FileReader::try_new(file, None)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut batches = Vec::new();
    let mut read = 0;
    for batch in reader {
        let batch = batch.map_err(|e| format!("{}: {e}", path.display()))?;
        read += batch.num_rows();
        batches.push(batch);
        if read >= rows {
            break;
        }
    }
    Ok(batches)
}

/// At most `limit` rows of `batches`, as an aligned text table.
fn arrow_table(batches: &[RecordBatch], limit: usize) -> String {
    let Some(first) = batches.first() else {
        return String::new();
    };
    let header: Vec<String> = first
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let mut rows: Vec<Vec<String>> = Vec::new();
    'batches: for batch in batches {
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| {
                arrow_cast::display::ArrayFormatter::try_new(
                    c.as_ref(),
                    &arrow_cast::display::FormatOptions::default().with_null("NULL"),
                )
            })
            .collect::<Result<_, _>>()
            .unwrap_or_default();
        for i in 0..batch.num_rows() {
            if rows.len() >= limit {
                break 'batches;
            }
            rows.push(formatters.iter().map(|f| f.value(i).to_string()).collect());
        }
    }
    aligned(&header, &rows)
}

/// JSON rows (a view's) as an aligned text table, columns in name order.
fn json_table(rows: &[serde_json::Value]) -> String {
    let mut header: Vec<String> = Vec::new();
    for r in rows {
        if let Some(o) = r.as_object() {
            for k in o.keys() {
                if !header.contains(k) {
                    header.push(k.clone());
                }
            }
        }
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            header
                .iter()
                .map(|h| match &r[h] {
                    serde_json::Value::Null => "NULL".to_owned(),
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect()
        })
        .collect();
    aligned(&header, &cells)
}

fn aligned(header: &[String], rows: &[Vec<String>]) -> String {
    let width = |i: usize| {
        rows.iter()
            .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
            .chain([header[i].chars().count()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..header.len()).map(width).collect();
    let line = |cells: &[String]| -> String {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("{}\n", padded.join(" | ").trim_end())
    };
    let mut out = line(header);
    out.push_str(&format!(
        "{}\n",
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("-+-")
    ));
    for r in rows {
        out.push_str(&line(r));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::statement_end;

    #[test]
    fn a_statement_ends_at_a_semicolon_outside_quotes_and_comments() {
        assert_eq!(statement_end("SELECT 1;"), Some(8));
        assert_eq!(statement_end("SELECT ';' AS s;"), Some(15));
        assert_eq!(statement_end("SELECT 1 -- not here;\n;"), Some(22));
        assert_eq!(statement_end("SELECT 'open;"), None);
    }
}
