//! Secret parameters of unfinished executions, sealed in the store with AES-256-GCM.
//!
//! A submission's secrets are sealed before its execution is stored, opened by whichever
//! worker runs it (after a restart too), and deleted when the execution ends (and swept
//! by the reaper, should that be missed). The execution id is the associated data, so a
//! sealed box moved to another execution does not open. The key never reaches the store.
//!
//! Keys: 32 bytes, written as 64 hex digits; several (one per line, or comma-separated)
//! for rotation: the first seals, any opens. See docs/server.md, "Secret parameters".

use std::collections::BTreeMap;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use opsbook_core::Input;
use opsbook_store::{Execution, SealedSecrets, ServerStore, now_ms};
use serde_json::{Map, Value, json};
use sha2::Digest;

use crate::error::ApiError;
use crate::state::AppState;

struct Key {
    id: String,
    cipher: Aes256Gcm,
}

/// The keys secrets are sealed with: the first seals, every one opens.
pub struct Keys {
    keys: Vec<Key>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|k| k.id.as_str()).collect();
        write!(f, "Keys({})", ids.join(", "))
    }
}

/// A new random key, as written in a key file or `OPSBOOK_SECRET_KEY`.
pub fn new_key_text() -> String {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).expect("the OS random source is available");
    hex::encode(key)
}

impl Keys {
    /// Reads keys written as 64 hex digits each, one per line or comma-separated (`#`
    /// starts a comment); the first is the one that seals.
    pub fn parse(text: &str) -> Result<Keys, String> {
        let mut keys = Vec::new();
        for (i, word) in Keys::words(text).enumerate() {
            let bytes = hex::decode(word).ok().filter(|b| b.len() == 32).ok_or_else(|| {
                format!("key {}: expected 64 hex digits (32 bytes), e.g. from `openssl rand -hex 32`", i + 1)
            })?;
            let id = hex::encode(sha2::Sha256::digest([b"opsbook-secret-key:".as_slice(), &bytes].concat()))[..16]
                .to_string();
            let cipher = Aes256Gcm::new_from_slice(&bytes).map_err(|e| format!("key {}: {e}", i + 1))?;
            keys.push(Key { id, cipher });
        }
        if keys.is_empty() {
            return Err("no key: expected 64 hex digits (32 bytes), e.g. from `openssl rand -hex 32`".into());
        }
        Ok(Keys { keys })
    }

    /// The keys of a key text as written (64 hex digits each, unchecked), comments left out.
    pub fn words(text: &str) -> impl Iterator<Item = &str> {
        (text.lines().map(|l| l.split('#').next().unwrap_or_default()).flat_map(|l| l.split(',')))
            .map(str::trim)
            .filter(|w| !w.is_empty())
    }

    /// Whether a key of this id is among these.
    pub fn has(&self, id: &str) -> bool {
        self.keys.iter().any(|k| k.id == id)
    }

    /// Seals `secrets` for execution `id` with the current key.
    pub fn seal(&self, id: &str, secrets: &BTreeMap<String, Input>) -> SealedSecrets {
        let key = &self.keys[0];
        let doc: Map<String, Value> = secrets
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Input::Text(t) => json!({ "text": t }),
                    Input::Value(v) => json!({ "value": v }),
                };
                (k.clone(), v)
            })
            .collect();
        let plain = serde_json::to_vec(&doc).unwrap_or_default();
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).expect("the OS random source is available");
        let ciphertext = key
            .cipher
            .encrypt(&Nonce::from(nonce), Payload { msg: &plain, aad: id.as_bytes() })
            .expect("AES-GCM seals any message shorter than 64 GiB");
        SealedSecrets {
            execution_id: id.to_string(),
            key_id: key.id.clone(),
            nonce: nonce.to_vec(),
            ciphertext,
            created_at: now_ms(),
        }
    }

    /// Opens sealed secrets; says why not (never with what they hold).
    pub fn open(&self, s: &SealedSecrets) -> Result<BTreeMap<String, Input>, String> {
        let key = self.keys.iter().find(|k| k.id == s.key_id).ok_or_else(|| {
            format!(
                "its secret parameters were sealed with key {}, which this server does not have \
                 (was the key rotated away, or is another key configured on this node?)",
                s.key_id
            )
        })?;
        let nonce: [u8; 12] =
            s.nonce.as_slice().try_into().map_err(|_| "its sealed secrets are damaged".to_string())?;
        let plain = key
            .cipher
            .decrypt(&Nonce::from(nonce), Payload { msg: &s.ciphertext, aad: s.execution_id.as_bytes() })
            .map_err(|_| "its sealed secrets do not open with their key: they were altered or moved".to_string())?;
        let doc: Map<String, Value> =
            serde_json::from_slice(&plain).map_err(|_| "its sealed secrets are damaged".to_string())?;
        Ok(doc
            .into_iter()
            .map(|(k, v)| {
                let input = match v.get("text").and_then(Value::as_str) {
                    Some(t) => Input::Text(t.to_string()),
                    None => Input::Value(v.get("value").cloned().unwrap_or(Value::Null)),
                };
                (k, input)
            })
            .collect())
    }
}

/// Keeps the secrets of execution `id` (none: forgets any).
pub async fn put(st: &AppState, id: &str, secrets: &BTreeMap<String, Input>) -> Result<(), ApiError> {
    if secrets.is_empty() {
        st.store.delete_secrets(id).await?;
    } else {
        st.store.put_secrets(&st.keys.seal(id, secrets)).await?;
    }
    Ok(())
}

/// The secrets of execution `id` (none kept: none).
pub async fn get(st: &AppState, exec: &Execution) -> Result<BTreeMap<String, Input>, String> {
    if !has_secrets(exec) {
        return Ok(BTreeMap::new());
    }
    match st.store.sealed_secrets(&exec.id).await.map_err(|e| e.to_string())? {
        Some(sealed) => st.keys.open(&sealed),
        None => Ok(BTreeMap::new()),
    }
}

/// `text` (an approval's comment, a manual step's note) with the secrets of `exec` (kept
/// in the vault, and those just `supplied`) masked, before it is stored or audited: people
/// paste values into comments.
pub async fn masked(
    st: &AppState,
    exec: &Execution,
    supplied: &BTreeMap<String, Input>,
    text: Option<String>,
) -> Option<String> {
    let text = text?;
    let kept = get(st, exec).await.unwrap_or_default();
    let masker = opsbook_core::secret::Masker::for_inputs(kept.values().chain(supplied.values()));
    Some(masker.mask(&text).into_owned())
}

/// Whether an execution was given secret parameters (their digests are stored with it):
/// only then is there anything sealed to read or delete.
pub fn has_secrets(exec: &Execution) -> bool {
    exec.secret_digests.as_object().is_some_and(|o| !o.is_empty())
}

/// Forgets the secrets of execution `id` (it ended).
pub async fn remove(st: &AppState, id: &str) {
    if let Err(e) = st.store.delete_secrets(id).await {
        tracing::warn!(%e, id, "cannot delete the execution's secrets; the reaper will");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets() -> BTreeMap<String, Input> {
        BTreeMap::from([
            ("pw".to_string(), Input::Text("hunter2".into())),
            ("token".to_string(), Input::Value(json!("s3cr3t"))),
        ])
    }

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_execution() {
        let keys = Keys::parse(&new_key_text()).unwrap();
        let sealed = keys.seal("e1", &secrets());
        assert!(!String::from_utf8_lossy(&sealed.ciphertext).contains("hunter2"));
        let opened = keys.open(&sealed).unwrap();
        assert!(matches!(&opened["pw"], Input::Text(t) if t == "hunter2"));
        assert!(matches!(&opened["token"], Input::Value(v) if v == "s3cr3t"));
        // Moved to another execution: refused.
        let moved = SealedSecrets { execution_id: "e2".into(), ..sealed.clone() };
        assert!(keys.open(&moved).unwrap_err().contains("altered or moved"));
        // Another server's key: says which key it needs.
        let other = Keys::parse(&new_key_text()).unwrap();
        let err = other.open(&sealed).unwrap_err();
        assert!(err.contains(&sealed.key_id) && err.contains("rotated"), "{err}");
        // Rotation: a new first key seals, the old one still opens what it sealed.
        let old = new_key_text();
        let before = Keys::parse(&old).unwrap().seal("e3", &secrets());
        let rotated = Keys::parse(&format!("{}\n{old}  # previous\n", new_key_text())).unwrap();
        assert!(rotated.open(&before).is_ok());
        assert_ne!(rotated.seal("e3", &secrets()).key_id, before.key_id);
    }

    #[test]
    fn keys_must_be_32_bytes_of_hex() {
        assert!(Keys::parse("").unwrap_err().starts_with("no key"));
        assert!(Keys::parse("abcd").unwrap_err().starts_with("key 1: expected 64 hex digits"));
        let two = format!("{},{}", new_key_text(), "z".repeat(64));
        assert!(Keys::parse(&two).unwrap_err().starts_with("key 2:"));
        assert_eq!(new_key_text().len(), 64);
    }
}
