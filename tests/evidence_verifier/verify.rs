//! A stand-alone verifier of evidence bundles, written against the bundle's
//! documented format only (no `sms_consent` item): what a third party does
//! with the organisation's published public key.
//!
//! 1. base64-decode `bundle_b64`: those bytes are what was signed;
//! 2. check `signature.value` (base64, Ed25519) over them with the public
//!    key (base64, 32 bytes) whose id is `signature.key_id`;
//! 3. read the bundle from those bytes (UTF-8 JSON).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signature, VerifyingKey};

/// The signed bytes of an evidence answer.
pub fn signed_bytes(answer: &serde_json::Value) -> Result<Vec<u8>, String> {
    let b64 = answer["bundle_b64"].as_str().ok_or("no bundle_b64")?;
    STANDARD.decode(b64).map_err(|e| format!("bundle_b64: {e}"))
}

/// Checks `signature` over `bytes` with `public_key_b64`; returns the bundle.
pub fn verify_bytes(
    bytes: &[u8],
    signature: &serde_json::Value,
    public_key_b64: &str,
) -> Result<serde_json::Value, String> {
    if signature["alg"] != "Ed25519" {
        return Err(format!("unknown alg {}", signature["alg"]));
    }
    let key: [u8; 32] = STANDARD
        .decode(public_key_b64.trim())
        .map_err(|e| format!("public key: {e}"))?
        .try_into()
        .map_err(|_| "public key: not 32 bytes".to_owned())?;
    let key = VerifyingKey::from_bytes(&key).map_err(|e| format!("public key: {e}"))?;
    let value: [u8; 64] = STANDARD
        .decode(signature["value"].as_str().ok_or("no signature value")?)
        .map_err(|e| format!("signature: {e}"))?
        .try_into()
        .map_err(|_| "signature: not 64 bytes".to_owned())?;
    key.verify_strict(bytes, &Signature::from_bytes(&value)).map_err(|_| "the signature does not verify".to_owned())?;
    let bundle: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| format!("bundle: {e}"))?;
    if bundle["signed_by"] != signature["key_id"] {
        return Err("the bundle names another signing key".into());
    }
    Ok(bundle)
}

/// Verifies an evidence answer (the JSON the route returns) with the
/// published public key; returns the bundle as signed.
pub fn verify_answer(answer: &serde_json::Value, public_key_b64: &str) -> Result<serde_json::Value, String> {
    verify_bytes(&signed_bytes(answer)?, &answer["signature"], public_key_b64)
}
