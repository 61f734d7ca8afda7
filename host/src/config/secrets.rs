//! Secrets in pipeline definitions: any string may hold references that are replaced when the
//! definition is loaded to run, so that a password never has to be written into it.
//!
//! | reference | value | where |
//! |---|---|---|
//! | `${env:NAME}` | the environment variable `NAME` of the process | `sabot run`; on a server, any but `SABOT_*` |
//! | `${file:PATH}` | the file's text, without its final newline | `sabot run` only (relative to the pipeline file) |
//! | `${secret:NAME}` | the server's secret `NAME` (`sabot secret set NAME`) | `sabot serve` only |
//!
//! `$${` stands for a literal `${`. The definition as written (with its references) is what is
//! kept and shown; the values live only in the memory of the run. [`Resolved::redact`] takes them
//! out of any message, and [`redact_definition`] hides literal values of sensitive properties in
//! a definition shown by the API.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The longest value a secret (or a `${file:}`) may have.
pub const MAX_SECRET_BYTES: usize = 64 * 1024;

/// What replaces a literal sensitive value in a definition shown by the API.
pub const REDACTED: &str = "[redacted]";

/// Where references may come from.
#[derive(Clone, Copy)]
pub enum Sources<'a> {
    /// `sabot run`: environment and files (relative paths from `base`).
    Run { base: &'a Path },
    /// A server: its secret store, and environment variables other than its own settings.
    Server { store: &'a SecretStore },
}

/// A reference that cannot be resolved: where it is and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretError {
    /// The field holding it (`sources.txns.properties."sasl.password"`).
    pub location: String,
    pub message: String,
}

/// The values a definition's references resolved to, with their references, to take them out of
/// messages.
#[derive(Debug, Clone, Default)]
pub struct Resolved(Vec<(String, String)>);

impl Resolved {
    /// `text` with every resolved value replaced by the reference it came from.
    pub fn redact(&self, text: &str) -> String {
        let mut text = text.to_owned();
        // Longest first, so that a value containing another is replaced whole.
        let mut pairs: Vec<&(String, String)> = self.0.iter().collect();
        pairs.sort_by_key(|(value, _)| std::cmp::Reverse(value.len()));
        for (value, reference) in pairs {
            if !value.is_empty() {
                text = text.replace(value.as_str(), reference);
            }
        }
        text
    }

    /// Whether any reference was resolved.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Replaces the references in every string of `doc` (keys are left alone).
pub fn resolve(doc: &mut toml::Value, sources: Sources<'_>) -> Result<Resolved, SecretError> {
    let mut resolved = Resolved::default();
    walk(doc, &mut String::new(), &mut |location, s| {
        *s = resolve_str(s, sources, &mut resolved).map_err(|message| SecretError {
            location: location.to_owned(),
            message,
        })?;
        Ok(())
    })?;
    Ok(resolved)
}

/// Calls `f` on every string of `value`, with the dotted path to it.
fn walk(
    value: &mut toml::Value,
    path: &mut String,
    f: &mut impl FnMut(&str, &mut String) -> Result<(), SecretError>,
) -> Result<(), SecretError> {
    match value {
        toml::Value::String(s) => f(path, s),
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk(item, path, f)?;
                path.truncate(len);
            }
            Ok(())
        }
        toml::Value::Table(table) => {
            for (key, item) in table.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                if key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    path.push_str(key);
                } else {
                    path.push_str(&format!("{key:?}"));
                }
                walk(item, path, f)?;
                path.truncate(len);
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// `text` with its references replaced; the error names the reference, never a value.
fn resolve_str(
    text: &str,
    sources: Sources<'_>,
    resolved: &mut Resolved,
) -> Result<String, String> {
    if !text.contains("${") {
        return Ok(text.to_owned());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        if rest[..i].ends_with('$') {
            // `$${` is a literal `${`.
            out.push_str(&rest[..i - 1]);
            out.push_str("${");
            rest = &rest[i + 2..];
            continue;
        }
        out.push_str(&rest[..i]);
        let body = &rest[i + 2..];
        let end = body.find('}').ok_or_else(|| {
            format!("{:?} opens a reference that is not closed: expected ${{env:NAME}}, ${{file:PATH}} or ${{secret:NAME}} (write $${{ for a literal ${{)", &rest[i..])
        })?;
        let reference = &body[..end];
        let value = lookup(reference, sources)?;
        resolved
            .0
            .push((value.clone(), format!("${{{reference}}}")));
        out.push_str(&value);
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The value of one reference (`env:NAME`, `file:PATH`, `secret:NAME`).
fn lookup(reference: &str, sources: Sources<'_>) -> Result<String, String> {
    let (kind, name) = reference.split_once(':').unwrap_or((reference, ""));
    let shown = format!("${{{reference}}}");
    if name.is_empty() {
        return Err(format!(
            "{shown} names nothing: expected ${{env:NAME}}, ${{file:PATH}} or ${{secret:NAME}}"
        ));
    }
    match (kind, sources) {
        ("env", sources) => {
            if matches!(sources, Sources::Server { .. }) && name.starts_with("SABOT_") {
                return Err(format!(
                    "{shown}: the server's own settings (SABOT_*) cannot be read by a pipeline; store the value with `sabot secret set NAME` and write ${{secret:NAME}}"
                ));
            }
            std::env::var(name).map_err(|_| {
                format!("{shown}: the environment variable {name} is not set (or not UTF-8)")
            })
        }
        ("file", Sources::Run { base }) => {
            let path = base.join(name);
            let bytes = read_small(&path).map_err(|e| format!("{shown}: {e}"))?;
            let mut text = String::from_utf8(bytes)
                .map_err(|_| format!("{shown}: {} is not UTF-8 text", path.display()))?;
            if text.ends_with('\n') {
                text.pop();
                if text.ends_with('\r') {
                    text.pop();
                }
            }
            Ok(text)
        }
        ("file", Sources::Server { .. }) => Err(format!(
            "{shown}: a server does not read its own files for a pipeline; store the value with `sabot secret set NAME` and write ${{secret:NAME}}"
        )),
        ("secret", Sources::Server { store }) => {
            store.get(name).map_err(|e| format!("{shown}: {e}"))
        }
        ("secret", Sources::Run { .. }) => Err(format!(
            "{shown}: secrets are kept by a server (`sabot serve`); with `sabot run`, write ${{env:NAME}} or ${{file:PATH}}"
        )),
        (other, _) => Err(format!(
            "{shown}: unknown kind of reference `{other}`: expected ${{env:NAME}}, ${{file:PATH}} or ${{secret:NAME}} (write $${{ for a literal ${{)"
        )),
    }
}

/// A file's bytes, refused past [`MAX_SECRET_BYTES`].
fn read_small(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() > MAX_SECRET_BYTES {
        return Err(format!(
            "{} is larger than the {MAX_SECRET_BYTES} bytes a secret may have",
            path.display()
        ));
    }
    Ok(bytes)
}

/// Whether a property or field named `key` holds a secret: `*password*`, `*secret*`,
/// `*token*`, `*credential*`, `sasl.*`, `ssl.key.*`.
pub fn is_sensitive(key: &str) -> bool {
    let k = key.to_ascii_lowercase().replace('_', ".");
    ["password", "secret", "token", "credential"]
        .iter()
        .any(|p| k.contains(p))
        || k.starts_with("sasl.")
        || k.starts_with("ssl.key.")
}

/// `text` (a TOML definition) with every literal value of a sensitive key replaced by
/// [`REDACTED`]; values that are only references are shown. Unchanged when nothing is hidden.
pub fn redact_definition(text: &str) -> String {
    let Ok(mut doc) = toml::from_str::<toml::Value>(text) else {
        return text.to_owned();
    };
    let mut changed = false;
    hide(&mut doc, false, &mut changed);
    if !changed {
        return text.to_owned();
    }
    toml::to_string(&doc).unwrap_or_else(|_| REDACTED.to_owned())
}

fn hide(value: &mut toml::Value, sensitive: bool, changed: &mut bool) {
    match value {
        toml::Value::String(s) if sensitive && !only_references(s) => {
            *s = REDACTED.to_owned();
            *changed = true;
        }
        toml::Value::Array(items) => {
            for item in items {
                hide(item, sensitive, changed);
            }
        }
        toml::Value::Table(table) => {
            for (key, item) in table.iter_mut() {
                hide(item, sensitive || is_sensitive(key), changed);
            }
        }
        _ => {}
    }
}

/// Whether `s` is made only of `${…}` references (nothing literal to hide).
fn only_references(s: &str) -> bool {
    let mut rest = s.trim();
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let Some(body) = rest.strip_prefix("${") else {
            return false;
        };
        let Some(end) = body.find('}') else {
            return false;
        };
        rest = body[end + 1..].trim_start();
    }
    true
}

/// A server's secrets: one file per secret under `DATA/secrets/` (the directory 0700, each file
/// 0600). Values are written and used, never returned by the API.
#[derive(Debug)]
pub struct SecretStore {
    dir: PathBuf,
}

impl SecretStore {
    /// Opens (creating) the store at `dir`, private to this user.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        Ok(SecretStore {
            dir: dir.to_owned(),
        })
    }

    /// Checks a secret's name: 1 to 128 of `A-Z a-z 0-9 _ . -`, not starting with `.`.
    pub fn check_name(name: &str) -> Result<(), String> {
        let ok = !name.is_empty()
            && name.len() <= 128
            && !name.starts_with('.')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if ok {
            Ok(())
        } else {
            Err(format!(
                "{name:?} is not a secret name: expected 1 to 128 letters, digits, `_`, `.` or `-`, not starting with `.`"
            ))
        }
    }

    /// Stores `value` as secret `name` (replacing it), atomically, mode 0600.
    pub fn set(&self, name: &str, value: &str) -> Result<(), String> {
        Self::check_name(name)?;
        if value.len() > MAX_SECRET_BYTES {
            return Err(format!(
                "the value is {} bytes: a secret may have at most {MAX_SECRET_BYTES}",
                value.len()
            ));
        }
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .and_then(|mut f| {
                f.write_all(value.as_bytes())?;
                f.sync_all()
            })
            .and_then(|()| std::fs::rename(&tmp, &path));
        written.map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("cannot store secret `{name}`: {e}")
        })
    }

    /// The value of secret `name`.
    pub fn get(&self, name: &str) -> Result<String, String> {
        Self::check_name(name)?;
        let path = self.dir.join(name);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => format!(
                    "the server has no secret `{name}`: store it with `sabot secret set {name}` (GET /v1/secrets lists them)"
                ),
                _ => format!("cannot read secret `{name}`: {e}"),
            })?;
        use std::io::Read;
        let mut bytes = Vec::new();
        file.take(MAX_SECRET_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read secret `{name}`: {e}"))?;
        String::from_utf8(bytes).map_err(|_| format!("secret `{name}` is not UTF-8 text"))
    }

    /// Deletes secret `name`; whether it existed.
    pub fn delete(&self, name: &str) -> Result<bool, String> {
        Self::check_name(name)?;
        match std::fs::remove_file(self.dir.join(name)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(format!("cannot delete secret `{name}`: {e}")),
        }
    }

    /// The secrets' names and when each was last set (ms since the epoch), by name.
    pub fn list(&self) -> Vec<(String, u64)> {
        let mut names: Vec<(String, u64)> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                Self::check_name(&name).ok()?;
                let modified = e.metadata().ok()?.modified().ok()?;
                let ms = modified
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                Some((name, ms))
            })
            .collect();
        names.sort();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> toml::Value {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn references_are_replaced_in_every_string_and_redacted_from_messages() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "from-a-file\n").unwrap();
        // SAFETY: tests in this module do not read this variable concurrently.
        unsafe { std::env::set_var("SABOT_TEST_SECRET_ENV", "from-env") };
        let mut d = doc(r#"a = "user:${env:SABOT_TEST_SECRET_ENV}"
[t]
list = ["${file:pw}", "$${not-a-reference}"]"#);
        let resolved = resolve(&mut d, Sources::Run { base: dir.path() }).unwrap();
        assert_eq!(d["a"].as_str(), Some("user:from-env"));
        assert_eq!(d["t"]["list"][0].as_str(), Some("from-a-file"));
        assert_eq!(d["t"]["list"][1].as_str(), Some("${not-a-reference}"));
        assert_eq!(
            resolved.redact("bad value from-a-file and from-env"),
            "bad value ${file:pw} and ${env:SABOT_TEST_SECRET_ENV}"
        );
    }

    #[test]
    fn unresolvable_references_name_the_field_and_the_reference_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = SecretStore::open(&dir.path().join("secrets")).unwrap();
        let cases = [
            (
                r#"p = { "sasl.password" = "${secret:nope}" }"#,
                "p.\"sasl.password\"",
                "no secret `nope`",
            ),
            (r#"x = "${env:SABOT_TOKEN}""#, "x", "SABOT_*"),
            (
                r#"x = "${file:/etc/passwd}""#,
                "x",
                "does not read its own files",
            ),
            (
                r#"x = "${vault:a}""#,
                "x",
                "unknown kind of reference `vault`",
            ),
            (r#"x = "${env:A""#, "x", "not closed"),
        ];
        for (text, location, message) in cases {
            let mut d = doc(text);
            let e = resolve(&mut d, Sources::Server { store: &store }).unwrap_err();
            assert_eq!(e.location, location, "{text}");
            assert!(e.message.contains(message), "{text}: {}", e.message);
        }
    }

    #[test]
    fn the_store_keeps_values_private_and_lists_names_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = SecretStore::open(&dir.path().join("secrets")).unwrap();
        store.set("kafka-password", "hunter2").unwrap();
        assert_eq!(store.get("kafka-password").unwrap(), "hunter2");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("secrets")), 0o700);
        assert_eq!(mode(&dir.path().join("secrets/kafka-password")), 0o600);
        assert_eq!(
            store
                .list()
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>(),
            ["kafka-password"]
        );
        assert!(store.set("../escape", "x").is_err());
        assert!(store.set("big", &"x".repeat(MAX_SECRET_BYTES + 1)).is_err());
        assert!(store.delete("kafka-password").unwrap());
        assert!(
            store
                .get("kafka-password")
                .unwrap_err()
                .contains("sabot secret set")
        );
    }

    #[test]
    fn definitions_shown_hide_literal_sensitive_values_and_keep_references() {
        let text = r#"[sources.k]
type = "kafka"
properties = { "sasl.password" = "hunter2", "sasl.username" = "${secret:user}", "ssl.key.pem" = "-----BEGIN", "client.id" = "visible" }
[agents.a]
config = { api_token = "tok-123", note = "kept" }
"#;
        let shown = redact_definition(text);
        for hidden in ["hunter2", "-----BEGIN", "tok-123"] {
            assert!(!shown.contains(hidden), "{hidden} shown in {shown}");
        }
        for kept in ["${secret:user}", "visible", "kept"] {
            assert!(shown.contains(kept), "{kept} hidden in {shown}");
        }
        let plain = "[pipeline]\nname = \"x\"  # as written\n";
        assert_eq!(redact_definition(plain), plain);
    }
}
