//! The module store: uploaded components, content-addressed by sha256, tagged `name@version`.
//!
//! On disk, under `DATA/modules/`: `sha256/HEX.wasm` (the bytes, written once) and `tags.json`
//! (name → version → sha256, size, world, upload time), replaced atomically. Names and versions
//! are checked against a strict alphabet and never become paths: only the hash does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::ApiError;
use crate::wasm::{AgentModule, WasmRuntime};

/// The longest module, pipeline or agent name, and the longest version.
pub const MAX_NAME: usize = 64;

/// A tag's record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ModuleInfo {
    pub name: String,
    pub version: String,
    pub sha256: String,
    pub size: u64,
    /// `timed-agent` (exports the event-time hooks) or `agent`.
    pub world: String,
    pub uploaded_unix_ms: u64,
}

impl ModuleInfo {
    /// `name@version`.
    pub fn reference(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// Checks a module or pipeline name: 1 to 64 of `a-z 0-9 _ -`, starting with a letter or digit.
pub fn check_name(what: &str, name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "{what} {name:?} is not a valid name: expected 1 to {MAX_NAME} characters of a-z, 0-9, `_` and `-`, starting with a letter or digit"
        )))
    }
}

/// Checks a version: 1 to 64 of `A-Z a-z 0-9 . _ + -`, starting with a letter or digit.
pub fn check_version(version: &str) -> Result<(), ApiError> {
    let ok = !version.is_empty()
        && version.len() <= MAX_NAME
        && version.starts_with(|c: char| c.is_ascii_alphanumeric())
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "version {version:?} is not valid: expected 1 to {MAX_NAME} characters of A-Z, a-z, 0-9, `.`, `_`, `+` and `-`, starting with a letter or digit (such as 1.2.0)"
        )))
    }
}

/// Splits `name@version`, checking both.
pub fn parse_reference(reference: &str) -> Result<(&str, &str), ApiError> {
    let (name, version) = reference.split_once('@').ok_or_else(|| {
        ApiError::bad_request(format!(
            "module reference {reference:?} is not valid: expected NAME@VERSION (an uploaded module) or builtin:NAME"
        ))
    })?;
    check_name("module", name)?;
    check_version(version)?;
    Ok((name, version))
}

type Tags = BTreeMap<String, BTreeMap<String, ModuleInfo>>;

/// The uploaded modules.
#[derive(Debug)]
pub struct ModuleStore {
    dir: PathBuf,
    tags: Mutex<Tags>,
}

impl ModuleStore {
    /// Opens (creating) the store under `dir`.
    pub fn open(dir: &Path) -> Result<Self, ApiError> {
        std::fs::create_dir_all(dir.join("sha256")).map_err(|e| {
            ApiError::internal(format!(
                "cannot create {}: {e}",
                dir.join("sha256").display()
            ))
        })?;
        let tags_file = dir.join("tags.json");
        let tags = match std::fs::read(&tags_file) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                ApiError::internal(format!("{} does not parse: {e}", tags_file.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Tags::new(),
            Err(e) => {
                return Err(ApiError::internal(format!(
                    "cannot read {}: {e}",
                    tags_file.display()
                )));
            }
        };
        Ok(ModuleStore {
            dir: dir.to_owned(),
            tags: Mutex::new(tags),
        })
    }

    fn blob(&self, sha256: &str) -> PathBuf {
        self.dir.join("sha256").join(format!("{sha256}.wasm"))
    }

    fn tags(&self) -> std::sync::MutexGuard<'_, Tags> {
        self.tags.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn save(&self, tags: &Tags) -> Result<(), ApiError> {
        let bytes = serde_json::to_vec_pretty(tags)
            .map_err(|e| ApiError::internal(format!("cannot encode the module tags: {e}")))?;
        write_atomic(&self.dir.join("tags.json"), &bytes)
    }

    /// Stores `bytes`, already validated as `module`, under `name@version`. The same bytes under
    /// the same tag again is a no-op (`Ok(false)`); other bytes under an existing tag are refused.
    pub fn put(
        &self,
        name: &str,
        version: &str,
        bytes: &[u8],
        module: &AgentModule,
    ) -> Result<(ModuleInfo, bool), ApiError> {
        let mut tags = self.tags();
        if let Some(existing) = tags.get(name).and_then(|v| v.get(version)) {
            if existing.sha256 == module.sha256 {
                return Ok((existing.clone(), false));
            }
            return Err(ApiError::conflict(format!(
                "module {name}@{version} exists with other content (sha256 {}): versions are immutable; upload as a new version",
                existing.sha256
            )));
        }
        let blob = self.blob(&module.sha256);
        if !blob.exists() {
            write_atomic(&blob, bytes)?;
        }
        let info = ModuleInfo {
            name: name.to_owned(),
            version: version.to_owned(),
            sha256: module.sha256.clone(),
            size: bytes.len() as u64,
            world: if module.has_time_handler() {
                "timed-agent"
            } else {
                "agent"
            }
            .to_owned(),
            uploaded_unix_ms: super::now_unix_ms(),
        };
        tags.entry(name.to_owned())
            .or_default()
            .insert(version.to_owned(), info.clone());
        self.save(&tags)?;
        Ok((info, true))
    }

    /// Stores a tag the cluster's command log names, with its bytes from the object store:
    /// checked against the tag's sha256 and size, not compiled (a pipeline that uses it
    /// compiles it). Another tag of the same name and version is replaced: the log decides.
    pub fn put_trusted(&self, info: &ModuleInfo, bytes: &[u8]) -> Result<(), ApiError> {
        let sha256 = crate::wasm::cache::sha256_hex(bytes);
        if sha256 != info.sha256 || bytes.len() as u64 != info.size {
            return Err(ApiError::internal(format!(
                "the bytes of module {} are not what its tag says (sha256 {sha256}, {} bytes; expected {}, {} bytes)",
                info.reference(),
                bytes.len(),
                info.sha256,
                info.size
            )));
        }
        let mut tags = self.tags();
        let blob = self.blob(&info.sha256);
        if !blob.exists() {
            write_atomic(&blob, bytes)?;
        }
        tags.entry(info.name.clone())
            .or_default()
            .insert(info.version.clone(), info.clone());
        self.save(&tags)
    }

    /// Every tag, by name then version.
    pub fn list(&self) -> Vec<ModuleInfo> {
        self.tags()
            .values()
            .flat_map(|v| v.values().cloned())
            .collect()
    }

    /// The record of `name@version`.
    pub fn get(&self, name: &str, version: &str) -> Result<ModuleInfo, ApiError> {
        self.tags()
            .get(name)
            .and_then(|v| v.get(version))
            .cloned()
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "no module {name}@{version} (upload it with POST /v1/modules/{name}/{version})"
                ))
            })
    }

    /// Loads `name@version` into `runtime` (compiled already at upload: a cache hit).
    pub fn load(
        &self,
        runtime: &WasmRuntime,
        reference: &str,
    ) -> Result<(ModuleInfo, Arc<AgentModule>), ApiError> {
        let (name, version) = parse_reference(reference)?;
        let info = self.get(name, version)?;
        let path = self.blob(&info.sha256);
        let bytes = std::fs::read(&path)
            .map_err(|e| ApiError::internal(format!("cannot read {}: {e}", path.display())))?;
        let module = runtime
            .load_bytes(&info.reference(), &bytes)
            .map_err(|e| ApiError::unprocessable(e.to_string()))?;
        Ok((info, module))
    }

    /// The file holding the bytes of `name@version`.
    pub fn path(&self, reference: &str) -> Result<PathBuf, ApiError> {
        let (name, version) = parse_reference(reference)?;
        Ok(self.blob(&self.get(name, version)?.sha256))
    }

    /// Removes the tag `name@version`, and its bytes when no other tag has them.
    pub fn delete(&self, name: &str, version: &str) -> Result<ModuleInfo, ApiError> {
        let mut tags = self.tags();
        let info = tags
            .get_mut(name)
            .and_then(|v| v.remove(version))
            .ok_or_else(|| ApiError::not_found(format!("no module {name}@{version}")))?;
        if tags.get(name).is_some_and(|v| v.is_empty()) {
            tags.remove(name);
        }
        self.save(&tags)?;
        let shared = tags
            .values()
            .flat_map(|v| v.values())
            .any(|i| i.sha256 == info.sha256);
        if !shared {
            let _ = std::fs::remove_file(self.blob(&info.sha256));
        }
        Ok(info)
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename, so readers see all or nothing.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ApiError> {
    use std::io::Write;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let result = std::fs::File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        ApiError::internal(format!("cannot write {}: {e}", path.display()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_versions_are_a_strict_alphabet() {
        for ok in ["fraud", "a", "fraud-rules_2", "0x"] {
            assert!(check_name("module", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Fraud",
            "../x",
            "a/b",
            "-a",
            "a b",
            "é",
            &"a".repeat(65),
        ] {
            let e = check_name("module", bad).unwrap_err();
            assert!(e.message.contains("is not a valid name"), "{bad}: {e:?}");
        }
        for ok in ["1", "1.2.0", "2024-01-01", "1.0.0+build.5", "v2"] {
            assert!(check_version(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".1", "..", "1/2", "1 2", "../../etc"] {
            assert!(check_version(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_reference("a@1.0").unwrap(), ("a", "1.0"));
        assert!(
            parse_reference("a")
                .unwrap_err()
                .message
                .contains("NAME@VERSION")
        );
    }
}
