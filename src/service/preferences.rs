//! The patient preference page's use cases: links that open it, what it
//! shows of a number, and the choices it records.
//!
//! A link's token is `base64url(id ‖ MAC)`: a random 10-byte id and the
//! first 8 bytes of HMAC-SHA256 over it under a key derived from the
//! integrity keys for this purpose (24 characters; the URL with a typical
//! domain is about 53). The token names the number only through the store:
//! `LINK#<SHA-256 of the id>` holds the number's blind index, the program
//! and the expiry; the number itself is the one sealed in the number's
//! `STATE` (making a link puts it there), so once the number is erased its
//! links open nothing. The MAC is checked (constant time) before any store
//! read, so a forged or altered token costs no read. Choices are events with source `portal` and caller
//! `link:<hash prefix>`, by the same rules as every other event (event time
//! = now, the chain, idempotent on the submission).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::{Duration, OffsetDateTime};

use super::records::RecordOutcome;
use super::{consent_decision, ConsentService, Effect, Pending, ServiceError};
use crate::crypto::Crypto;
use crate::domain::{Consent, ConsentChange, Decision, PhoneNumber, Program, Reason, Scope};
use crate::ports::keys::{event_sk, phone_pk, STATE_SK};
use crate::ports::{EventItem, LinkItem};

/// Random bytes of a link's id, and bytes of its MAC kept in the token.
pub const LINK_ID_BYTES: usize = 10;
pub const LINK_MAC_BYTES: usize = 8;
/// Characters of a token: base64url of id ‖ MAC.
pub const TOKEN_CHARS: usize = (LINK_ID_BYTES + LINK_MAC_BYTES) * 4 / 3;
/// Random bytes of a form's nonce, and bytes of the MAC binding it to the link.
const NONCE_BYTES: usize = 16;
const FORM_MAC_BYTES: usize = 16;
const LINK_PURPOSE: &str = "preference-link";
const FORM_PURPOSE: &str = "preference-form";
/// Characters of a link's hash that logs and its events' caller show.
const PREFIX_CHARS: usize = 10;
/// The portal's event source.
pub const PORTAL: &str = "portal";

type HmacSha256 = Hmac<Sha256>;

/// A link whose MAC verified: its id, not yet looked up.
#[derive(Clone, PartialEq, Eq)]
pub struct LinkId([u8; LINK_ID_BYTES]);

impl std::fmt::Debug for LinkId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LinkId({})", self.log_prefix())
    }
}

impl LinkId {
    /// base64url SHA-256 of the id: the store's key of the link.
    pub fn hash(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(self.0))
    }

    /// What logs and events name the link by (never the token).
    pub fn log_prefix(&self) -> String {
        self.hash()[..PREFIX_CHARS].to_owned()
    }
}

/// Why a link does not open the page.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Forged, altered, malformed or unknown: 404.
    #[error("the link is not valid")]
    Invalid,
    /// Past its expiry: 410.
    #[error("the link has expired")]
    Expired,
    #[error(transparent)]
    Service(#[from] ServiceError),
}

/// A link that opened: the number it names and its program.
#[derive(Debug)]
pub struct OpenLink {
    pub id: LinkId,
    pub pid: String,
    pub number: PhoneNumber,
    pub program: String,
    pub expires_at: OffsetDateTime,
}

impl OpenLink {
    /// The caller its events name: `link:<hash prefix>`.
    pub fn caller(&self) -> String {
        format!("link:{}", self.id.log_prefix())
    }
}

/// One category as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategoryChoice {
    pub category: String,
    pub decision: Decision,
}

/// What a patient chose on the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreferenceChoice {
    /// Stop every text of the link's program.
    StopProgram,
    /// Stop one category of it.
    StopCategory(String),
    /// Resume the program (every category): a new consent, with `wording`
    /// (what the page showed) recorded as its evidence.
    Resume { wording: String },
    /// Stop everything from the organisation (every program).
    StopAll,
}

impl PreferenceChoice {
    fn key(&self) -> String {
        match self {
            PreferenceChoice::StopProgram => "stop_program".into(),
            PreferenceChoice::StopCategory(c) => format!("stop_category:{c}"),
            PreferenceChoice::Resume { .. } => "resume".into(),
            PreferenceChoice::StopAll => "stop_all".into(),
        }
    }
}

fn keyed(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).expect("any key length");
    for part in parts {
        mac.update(&(part.len() as u32).to_be_bytes());
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Whether `given` is the first bytes of the MAC under any of `keys`,
/// each compared in constant time.
fn any_key_matches(keys: &[zeroize::Zeroizing<[u8; 32]>], parts: &[&[u8]], given: &[u8]) -> bool {
    keys.iter().fold(false, |found, key| found | bool::from(keyed(key, parts)[..given.len()].ct_eq(given)))
}

impl ConsentService {
    /// The token of a link id: base64url(id ‖ MAC).
    pub fn link_token(&self, id: &LinkId) -> Result<String, ServiceError> {
        let keys = self.crypto.purpose_keys(LINK_PURPOSE);
        let key = keys.first().ok_or(ServiceError::Integrity)?;
        let mut bytes = id.0.to_vec();
        bytes.extend_from_slice(&keyed(key, &[&id.0])[..LINK_MAC_BYTES]);
        Ok(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Checks a token's MAC (constant time, with every integrity key): no
    /// store read. None for anything this service did not sign.
    pub fn verify_link_token(&self, token: &str) -> Option<LinkId> {
        if token.len() != TOKEN_CHARS {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
        if bytes.len() != LINK_ID_BYTES + LINK_MAC_BYTES {
            return None;
        }
        let (id, mac) = bytes.split_at(LINK_ID_BYTES);
        let keys = self.crypto.purpose_keys(LINK_PURPOSE);
        any_key_matches(&keys, &[id], mac).then(|| LinkId(id.try_into().expect("split at the id's length")))
    }

    /// Makes a link to the preference page of `to` for `program`, valid for
    /// `ttl`. The request is recorded in the number's ledger
    /// (`preference_link`, with the caller). Returns the token and expiry.
    pub async fn make_preference_link(
        &self,
        to: &str,
        program: &str,
        ttl: Duration,
        caller: &str,
    ) -> Result<(String, OffsetDateTime), ServiceError> {
        let number = self.parse_number(to)?;
        let program = self
            .programs
            .get(program)
            .ok_or_else(|| ServiceError::Invalid(format!("program: {program:?} is not configured")))?;
        let pid = self.crypto.blind_index(&number);
        let now = self.now();
        let expires_at = now + ttl;
        // The ledger first: a link that exists was recorded, and the number
        // is sealed in the state, where the page reads it.
        let mut event = self.service_event(&pid, "preference_link", "api", Some(caller));
        event.program = Some(program.id.clone());
        self.commit_event(Pending { phone: Some(&number), ..Pending::own(event, Effect::KeepNumber) }).await?;
        let sealed = self.read_state(&pid).await?.and_then(|s| s.phone).ok_or(ServiceError::Integrity)?;
        for _ in 0..3 {
            let mut id = [0u8; LINK_ID_BYTES];
            rand::rngs::OsRng.fill_bytes(&mut id);
            let id = LinkId(id);
            let item = LinkItem {
                hash: id.hash(),
                pid: pid.clone(),
                phone_digest: Crypto::digest(&sealed),
                program: program.id.clone(),
                created_by: caller.to_owned(),
                created_at: now,
                expires_at,
            };
            if self.store.put_link(&item).await? {
                tracing::info!(pid = %pid, caller, link = %id.log_prefix(), "preference link made");
                return Ok((self.link_token(&id)?, expires_at));
            }
        }
        Err(ServiceError::Contention)
    }

    /// Opens a link: the MAC first (no store read for a forged one), then
    /// the stored link, its expiry, and the number sealed in the number's
    /// state: an erased number (none sealed) opens no link.
    pub async fn open_link(&self, token: &str) -> Result<OpenLink, LinkError> {
        let id = self.verify_link_token(token).ok_or(LinkError::Invalid)?;
        let hash = id.hash();
        let item = self.store.link(&hash).await.map_err(ServiceError::from)?.ok_or(LinkError::Invalid)?;
        if item.hash != hash {
            return Err(LinkError::Invalid);
        }
        if self.now() >= item.expires_at {
            return Err(LinkError::Expired);
        }
        // The number as sealed when the link was made: gone after an
        // erasure, and sealed anew if the number is recorded again.
        let sealed = self
            .read_state(&item.pid)
            .await?
            .and_then(|s| s.phone)
            .filter(|sealed| Crypto::digest(sealed) == item.phone_digest)
            .ok_or(LinkError::Invalid)?;
        let e164 =
            self.crypto.open(&sealed, &phone_pk(&item.pid), STATE_SK, "phone").await.map_err(ServiceError::from)?;
        let number = PhoneNumber::parse(&e164).map_err(|_| ServiceError::Integrity)?;
        if self.crypto.blind_index(&number) != item.pid || self.programs.get(&item.program).is_none() {
            return Err(LinkError::Invalid);
        }
        Ok(OpenLink { id, pid: item.pid, number, program: item.program, expires_at: item.expires_at })
    }

    /// The program a link opens (it was checked when the link opened).
    pub fn link_program(&self, link: &OpenLink) -> Result<&Program, ServiceError> {
        self.programs.get(&link.program).ok_or(ServiceError::Integrity)
    }

    /// The link's program's categories and their current decisions. The
    /// read is recorded first (`state_read`, source `portal`, caller the link).
    pub async fn preference_view(&self, link: &OpenLink) -> Result<Vec<CategoryChoice>, ServiceError> {
        let caller = link.caller();
        let event = self.service_event(&link.pid, "state_read", PORTAL, Some(&caller));
        self.commit_event(Pending::own(event, Effect::None)).await?;
        let state = self.read_state(&link.pid).await?.map(|s| s.consent).unwrap_or_default();
        let program = self.link_program(link)?;
        Ok(program
            .categories
            .iter()
            .map(|c| CategoryChoice { category: c.clone(), decision: consent_decision(&state, program, c) })
            .collect())
    }

    /// A fresh form token for the link: base64url(nonce ‖ MAC over the
    /// link's id and the nonce). Bound to the link; one per page shown.
    pub fn form_token(&self, link: &OpenLink) -> Result<String, ServiceError> {
        let keys = self.crypto.purpose_keys(FORM_PURPOSE);
        let key = keys.first().ok_or(ServiceError::Integrity)?;
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&keyed(key, &[&link.id.0, &nonce])[..FORM_MAC_BYTES]);
        Ok(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Whether a form token was made for this link (constant time).
    pub fn check_form_token(&self, link: &OpenLink, token: &str) -> bool {
        let Ok(bytes) = URL_SAFE_NO_PAD.decode(token) else {
            return false;
        };
        if bytes.len() != NONCE_BYTES + FORM_MAC_BYTES {
            return false;
        }
        let (nonce, mac) = bytes.split_at(NONCE_BYTES);
        any_key_matches(&self.crypto.purpose_keys(FORM_PURPOSE), &[&link.id.0, nonce], mac)
    }

    /// Records a choice made on the page, at once, as an event of source
    /// `portal` by the link. `submission` is the form's token: the same
    /// form submitted twice records once (`Duplicate`).
    pub async fn record_preference(
        &self,
        link: &OpenLink,
        choice: &PreferenceChoice,
        submission: &str,
    ) -> Result<RecordOutcome, ServiceError> {
        let program = self.link_program(link)?;
        let submission_id = {
            let digest = Sha256::digest(format!("{submission}\u{1f}{}", choice.key()));
            URL_SAFE_NO_PAD.encode(&digest[..12])
        };
        let caller = link.caller();
        let event_id = format!("{PORTAL}:{}:{submission_id}", link.id.log_prefix());
        let all_categories =
            || Scope::Categories { program: program.id.clone(), categories: program.categories.clone() };
        let (kind, consent, scope, evidence) = match choice {
            PreferenceChoice::StopProgram => {
                ("revocation", Consent::OptOut, Scope::Program { program: program.id.clone() }, None)
            }
            PreferenceChoice::StopCategory(category) => {
                if !program.has_category(category) {
                    return Err(ServiceError::Invalid(format!("category: not a category of {:?}", program.id)));
                }
                let scope = Scope::Categories { program: program.id.clone(), categories: vec![category.clone()] };
                ("revocation", Consent::OptOut, scope, None)
            }
            PreferenceChoice::StopAll => ("revocation", Consent::OptOut, Scope::All, None),
            PreferenceChoice::Resume { wording } => (
                "consent_express_written",
                Consent::OptIn,
                Scope::Program { program: program.id.clone() },
                Some(wording),
            ),
        };
        let outcome = self.portal_event(link, &event_id, kind, consent, scope, evidence, &caller).await?;
        // A category's own revocation stands against a later opt-in of the
        // whole program (`ConsentState::deciding_mark`): resuming lifts the
        // categories too, in a second event of the same submission.
        if let PreferenceChoice::Resume { wording } = choice {
            let categories_id = format!("{event_id}:categories");
            self.portal_event(link, &categories_id, kind, consent, all_categories(), Some(wording), &caller).await?;
        }
        Ok(outcome)
    }

    #[allow(clippy::too_many_arguments)]
    async fn portal_event(
        &self,
        link: &OpenLink,
        event_id: &str,
        kind: &str,
        consent: Consent,
        scope: Scope,
        evidence: Option<&String>,
        caller: &str,
    ) -> Result<RecordOutcome, ServiceError> {
        let now = self.now();
        let pk = crate::ports::keys::phone_pk(&link.pid);
        let sk = event_sk(now, event_id);
        let evidence = match evidence {
            Some(text) => Some(self.crypto.seal(text, &pk, &sk, "evidence").await?),
            None => None,
        };
        let (program, categories) = match &scope {
            Scope::All => (None, Vec::new()),
            Scope::Program { program } => (Some(program.clone()), Vec::new()),
            Scope::Categories { program, categories } => (Some(program.clone()), categories.clone()),
        };
        let change = ConsentChange { event_id: event_id.to_owned(), occurred_at: now, consent, scope };
        let event = EventItem {
            pid: link.pid.clone(),
            event_id: event_id.to_owned(),
            kind: kind.to_owned(),
            source: PORTAL.to_owned(),
            program,
            categories,
            text: None,
            evidence,
            caller: Some(caller.to_owned()),
            code: None,
            signature_verified: false,
            occurred_at: now,
            received_at: now,
            link: None,
        };
        let pending = Pending { phone: Some(&link.number), ..Pending::own(event, Effect::Apply(&change)) };
        if self.commit_event(pending).await? {
            tracing::info!(pid = %link.pid, caller, kind, "preference recorded from the page");
            Ok(RecordOutcome::Recorded { event_id: event_id.to_owned() })
        } else {
            Ok(RecordOutcome::Duplicate { event_id: event_id.to_owned() })
        }
    }
}

/// Whether a decision lets texts of the category go out (what the page
/// shows as on/off): only `allowed` does.
pub fn is_on(decision: &Decision) -> bool {
    decision.allowed && decision.reason == Reason::Allowed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use crate::adapters::embedded::EmbeddedStore;
    use crate::adapters::local_keyring::LocalKeyring;
    use crate::crypto::{CacheLimits, Crypto};
    use crate::domain::{DefaultConsent, Letterhead, Programs, ReplyMode, ReplyTemplates};
    use crate::ports::{Clock, ConsentStore};

    struct At(std::sync::Mutex<OffsetDateTime>);
    impl Clock for At {
        fn now(&self) -> OffsetDateTime {
            *self.0.lock().unwrap()
        }
    }

    const TO: &str = "+14158675309";

    async fn service(dir: &std::path::Path) -> (ConsentService, Arc<At>) {
        let store = Arc::new(EmbeddedStore::open(dir).unwrap());
        let keys: Arc<dyn crate::ports::KeyService> = Arc::new(LocalKeyring::open_or_create(dir).unwrap());
        let wrapped = match store.wrapped_keys().await.unwrap() {
            Some(w) => w,
            None => {
                store.put_wrapped_keys_if_absent(&Crypto::generate_keys(keys.as_ref()).await.unwrap()).await.unwrap()
            }
        };
        let crypto = Crypto::start(keys, &wrapped, store.table(), CacheLimits::default()).await.unwrap();
        let program = Program {
            id: "clinic".into(),
            letterhead: Letterhead {
                program: "Reminders".into(),
                organization: "Clinic".into(),
                help_contact: "555-0100".into(),
                frequency: "Msg frequency varies".into(),
            },
            numbers: vec![PhoneNumber::parse("+14155550100").unwrap()],
            categories: vec!["billing".into(), "reminders".into()],
            default: DefaultConsent::OptedIn,
            replies: ReplyTemplates::default(),
            reply_mode: ReplyMode::Service,
            unclear: Default::default(),
            send_rules: Vec::new(),
        };
        let clock = Arc::new(At(std::sync::Mutex::new(OffsetDateTime::now_utc())));
        let service = ConsentService::new(Programs::new([program]), store, Arc::new(crypto), clock.clone());
        (service, clock)
    }

    fn flip(token: &str, at: usize) -> String {
        let mut bytes = token.as_bytes().to_vec();
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        String::from_utf8(bytes).unwrap()
    }

    #[tokio::test]
    async fn a_link_is_short_verifies_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (token, expires) = {
            let (service, _) = service(dir.path()).await;
            service.make_preference_link(TO, "clinic", Duration::days(30), "front-desk").await.unwrap()
        };
        assert_eq!(token.len(), TOKEN_CHARS);
        assert_eq!(TOKEN_CHARS, 24);
        assert!(format!("https://msg.clinic.example/p/{token}").len() < 60);
        assert!(!token.contains("4158675309"));
        let (service, _) = service(dir.path()).await;
        let link = service.open_link(&token).await.unwrap();
        assert_eq!(link.number.as_e164(), TO);
        assert_eq!(link.program, "clinic");
        assert_eq!(link.expires_at, expires);
        assert!(!token.contains(&link.pid[..10]) && !token.contains(&link.id.hash()[..10]));
    }

    #[tokio::test]
    async fn a_tampered_or_unknown_token_is_refused_before_any_store_read() {
        let dir = tempfile::tempdir().unwrap();
        let (service, _) = service(dir.path()).await;
        let (token, _) = service.make_preference_link(TO, "clinic", Duration::days(1), "x").await.unwrap();
        for at in [0, 5, 12, 23] {
            let tampered = flip(&token, at);
            assert!(service.verify_link_token(&tampered).is_none(), "position {at}");
            assert!(matches!(service.open_link(&tampered).await, Err(LinkError::Invalid)));
        }
        for junk in ["", "x", &token[..23], &format!("{token}A"), "########################", "ÿÿÿÿÿÿÿÿÿÿÿÿ"]
        {
            assert!(service.verify_link_token(junk).is_none(), "{junk:?}");
        }
        // Signed, but never stored: the MAC passes and the store has none.
        let unknown = service.link_token(&LinkId([7; LINK_ID_BYTES])).unwrap();
        assert!(service.verify_link_token(&unknown).is_some());
        assert!(matches!(service.open_link(&unknown).await, Err(LinkError::Invalid)));
    }

    #[tokio::test]
    async fn a_link_expires_and_the_form_token_is_bound_to_its_link() {
        let dir = tempfile::tempdir().unwrap();
        let (service, clock) = service(dir.path()).await;
        let (token, _) = service.make_preference_link(TO, "clinic", Duration::days(30), "x").await.unwrap();
        let (other, _) = service.make_preference_link(TO, "clinic", Duration::days(30), "x").await.unwrap();
        let link = service.open_link(&token).await.unwrap();
        let other = service.open_link(&other).await.unwrap();
        let form = service.form_token(&link).unwrap();
        assert!(service.check_form_token(&link, &form));
        assert!(!service.check_form_token(&other, &form), "a form token of another link");
        assert!(!service.check_form_token(&link, &flip(&form, 30)));
        assert!(!service.check_form_token(&link, "not-a-token"));
        *clock.0.lock().unwrap() += Duration::days(30) - Duration::seconds(1);
        assert!(service.open_link(&token).await.is_ok());
        *clock.0.lock().unwrap() += Duration::seconds(1);
        assert!(matches!(service.open_link(&token).await, Err(LinkError::Expired)));
    }

    #[tokio::test]
    async fn choices_record_once_per_submission_and_resume_lifts_a_category_stop() {
        let dir = tempfile::tempdir().unwrap();
        let (service, clock) = service(dir.path()).await;
        // Each choice a second after the last (an opt-out wins a tie).
        let later = || *clock.0.lock().unwrap() += Duration::seconds(1);
        let (token, _) = service.make_preference_link(TO, "clinic", Duration::days(30), "x").await.unwrap();
        let link = service.open_link(&token).await.unwrap();
        let on = |view: &[CategoryChoice]| view.iter().map(|c| is_on(&c.decision)).collect::<Vec<_>>();
        assert_eq!(on(&service.preference_view(&link).await.unwrap()), [true, true]);
        let stop = PreferenceChoice::StopCategory("billing".into());
        let first = service.record_preference(&link, &stop, "nonce-1").await.unwrap();
        assert!(matches!(first, RecordOutcome::Recorded { .. }));
        let again = service.record_preference(&link, &stop, "nonce-1").await.unwrap();
        assert!(matches!(again, RecordOutcome::Duplicate { .. }));
        assert_eq!(on(&service.preference_view(&link).await.unwrap()), [false, true]);
        let resume = PreferenceChoice::Resume { wording: "I agree".into() };
        later();
        service.record_preference(&link, &resume, "nonce-2").await.unwrap();
        assert_eq!(on(&service.preference_view(&link).await.unwrap()), [true, true]);
        later();
        service.record_preference(&link, &PreferenceChoice::StopAll, "nonce-3").await.unwrap();
        assert_eq!(on(&service.preference_view(&link).await.unwrap()), [false, false]);
        let unknown = PreferenceChoice::StopCategory("nope".into());
        assert!(matches!(service.record_preference(&link, &unknown, "n").await, Err(ServiceError::Invalid(_))));
        let events = service.events(&link.number).await.unwrap();
        let portal: Vec<_> = events.iter().filter(|e| e.kind != "state_read" && e.source == PORTAL).collect();
        assert_eq!(portal.len(), 4, "stop, resume (program and categories), stop all");
        assert!(portal.iter().all(|e| e.caller.as_deref() == Some(link.caller().as_str())));
        assert!(events.iter().any(|e| e.kind == "preference_link" && e.caller.as_deref() == Some("x")));
    }
}
