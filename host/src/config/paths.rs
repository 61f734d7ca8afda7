//! Where the files a pipeline names may be. For `sabot run` they are the user's own files:
//! anywhere, relative paths anchored at the pipeline file's directory. On a server the
//! definition comes from a client, so every path — sources, sinks, the dead-letter file, schema
//! files, Kafka's key and certificate files — must stay inside the pipeline's directory
//! (`DATA/pipelines/NAME/`): relative, without `..`, and through no symbolic link; and Kafka
//! properties that load code or run a command are refused.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// Where a pipeline's paths may point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paths {
    /// Anywhere the user can reach (`sabot run`).
    Anywhere,
    /// Only inside the pipeline's directory (`sabot serve`).
    Confined,
}

/// librdkafka properties that name a file the client reads.
const KAFKA_FILE_PROPERTIES: &[&str] = &[
    "ssl.ca.location",
    "ssl.crl.location",
    "ssl.key.location",
    "ssl.certificate.location",
    "ssl.keystore.location",
    "sasl.kerberos.keytab",
    "https.ca.location",
];

/// librdkafka properties that load a library or run a program, or flood the host's log: never
/// taken from a definition sent to a server.
const KAFKA_SERVER_FORBIDDEN: &[(&str, &str)] = &[
    (
        "plugin.library.paths",
        "it loads a shared library into the host",
    ),
    (
        "ssl.engine.location",
        "it loads an OpenSSL engine into the host",
    ),
    ("ssl.providers", "it loads OpenSSL providers into the host"),
    ("sasl.kerberos.kinit.cmd", "it runs a command on the host"),
    (
        "debug",
        "it writes librdkafka's debug output into the host's log",
    ),
];

impl Paths {
    /// `path` anchored at `base`, or why it may not be used (a message naming the path).
    pub fn place(self, base: &Path, path: &Path) -> Result<PathBuf, String> {
        match self {
            Paths::Anywhere if path.is_absolute() => Ok(path.to_owned()),
            Paths::Anywhere => Ok(base.join(path)),
            Paths::Confined => confine(base, path),
        }
    }

    /// Anchors the file properties of a Kafka client at `base` and, on a server, confines them
    /// and refuses the properties that reach beyond the pipeline. `Err((field, message))`.
    pub fn kafka_properties(
        self,
        base: &Path,
        properties: &mut BTreeMap<String, String>,
    ) -> Result<(), (String, String)> {
        for (key, value) in properties.iter_mut() {
            let field = || format!("properties.\"{key}\"");
            // librdkafka also takes some names with `_` for `.`.
            let name = key.to_ascii_lowercase().replace('_', ".");
            if self == Paths::Confined
                && let Some((_, why)) = KAFKA_SERVER_FORBIDDEN.iter().find(|(k, _)| *k == name)
            {
                return Err((
                    field(),
                    format!("not allowed in a pipeline sent to a server: {why}"),
                ));
            }
            // `probe` asks librdkafka to look in the system's usual places.
            if self == Paths::Confined
                && name == "sasl.oauthbearer.token.endpoint.url"
                && !(value.starts_with("https://") || value.starts_with("http://"))
            {
                return Err((field(), "expected an http:// or https:// address".into()));
            }
            if KAFKA_FILE_PROPERTIES.contains(&name.as_str())
                && !(name == "ssl.ca.location" && value == "probe")
            {
                let placed = self
                    .place(base, Path::new(value.as_str()))
                    .map_err(|m| (field(), m))?;
                *value = placed.display().to_string();
            }
        }
        Ok(())
    }
}

/// `base/path` when `path` is relative, has no `..`, and no existing part of it is a symbolic
/// link (so nothing is followed out of `base`).
fn confine(base: &Path, path: &Path) -> Result<PathBuf, String> {
    let plain = !path.as_os_str().is_empty()
        && path.components().all(|c| matches!(c, Component::Normal(_)));
    if !plain {
        return Err(format!(
            "{} is outside the pipeline's directory: on a server, file paths must be relative, without `..` (they are kept under DATA/pipelines/NAME/)",
            path.display()
        ));
    }
    let mut at = base.to_path_buf();
    for part in path.components() {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(format!(
                    "{} passes through a symbolic link: on a server, links in a pipeline's directory are not followed",
                    path.display()
                ));
            }
            Ok(_) => {}
            // Nothing further exists (yet): a file the pipeline will create.
            Err(_) => break,
        }
    }
    Ok(base.join(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_confined_path_is_relative_without_dots_or_links() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        assert_eq!(
            Paths::Confined
                .place(base, Path::new("out/x.jsonl"))
                .unwrap(),
            base.join("out/x.jsonl")
        );
        for bad in ["/etc/passwd", "../q/x", "out/../../x", ""] {
            let e = Paths::Confined.place(base, Path::new(bad)).unwrap_err();
            assert!(e.contains("relative"), "{bad}: {e}");
        }
        std::fs::create_dir(base.join("in")).unwrap();
        std::os::unix::fs::symlink("/etc", base.join("in/etc")).unwrap();
        let e = Paths::Confined
            .place(base, Path::new("in/etc/passwd"))
            .unwrap_err();
        assert!(e.contains("symbolic link"), "{e}");
        assert_eq!(
            Paths::Anywhere
                .place(base, Path::new("/etc/passwd"))
                .unwrap(),
            Path::new("/etc/passwd")
        );
    }

    #[test]
    fn kafka_files_are_anchored_and_code_loading_properties_refused_on_a_server() {
        let base = Path::new("/data/pipelines/p");
        let mut props = BTreeMap::from([
            ("ssl.ca.location".to_owned(), "ca.pem".to_owned()),
            ("security.protocol".to_owned(), "ssl".to_owned()),
        ]);
        Paths::Confined.kafka_properties(base, &mut props).unwrap();
        assert_eq!(props["ssl.ca.location"], "/data/pipelines/p/ca.pem");
        let mut props = BTreeMap::from([("ssl.key.location".to_owned(), "/etc/ssl/k".to_owned())]);
        let (field, m) = Paths::Confined
            .kafka_properties(base, &mut props)
            .unwrap_err();
        assert_eq!(field, "properties.\"ssl.key.location\"");
        assert!(m.contains("outside the pipeline's directory"), "{m}");
        let mut props = BTreeMap::from([("ssl.key.location".to_owned(), "/etc/ssl/k".to_owned())]);
        Paths::Anywhere.kafka_properties(base, &mut props).unwrap();
        for (key, _) in KAFKA_SERVER_FORBIDDEN {
            let mut props = BTreeMap::from([(key.to_string(), "x".to_owned())]);
            let (field, m) = Paths::Confined
                .kafka_properties(base, &mut props)
                .unwrap_err();
            assert!(
                field.contains(key) && m.contains("not allowed"),
                "{field}: {m}"
            );
        }
        let mut props = BTreeMap::from([("plugin_library_paths".to_owned(), "x".to_owned())]);
        assert!(
            Paths::Confined.kafka_properties(base, &mut props).is_err(),
            "aliases too"
        );
        let mut props = BTreeMap::from([(
            "sasl.oauthbearer.token.endpoint.url".to_owned(),
            "file:///etc/shadow".to_owned(),
        )]);
        assert!(Paths::Confined.kafka_properties(base, &mut props).is_err());
        let mut props = BTreeMap::from([("ssl.ca.location".to_owned(), "probe".to_owned())]);
        Paths::Confined.kafka_properties(base, &mut props).unwrap();
        assert_eq!(props["ssl.ca.location"], "probe");
    }
}
