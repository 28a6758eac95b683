//! Consent state, the events that change it, and the one rule that merges
//! them: the latest event by event time wins, and at the same instant an
//! opt-out beats an opt-in (promise 3). The merge is a join: applying any
//! permutation of any events, with duplicates, gives the same state.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The two consent positions a person can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consent {
    OptIn,
    OptOut,
}

impl Consent {
    /// Opt-out ranks higher so that it wins a tie.
    fn rank(self) -> u8 {
        match self {
            Consent::OptIn => 0,
            Consent::OptOut => 1,
        }
    }
}

/// What an event covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Scope {
    /// Every program (STOP ALL, or a STOP to a number no program owns).
    All,
    /// Every category of one program.
    Program { program: String },
    /// Some categories of one program (consent captured through the API).
    Categories { program: String, categories: Vec<String> },
}

impl Scope {
    fn keys(&self) -> Vec<String> {
        match self {
            Scope::All => vec![GLOBAL_KEY.to_owned()],
            Scope::Program { program } => vec![program_key(program)],
            Scope::Categories { program, categories } => categories.iter().map(|c| category_key(program, c)).collect(),
        }
    }
}

const GLOBAL_KEY: &str = "*";

fn program_key(program: &str) -> String {
    format!("{program}/*")
}

fn category_key(program: &str, category: &str) -> String {
    format!("{program}/{category}")
}

/// The event that set one scope's consent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    pub consent: Consent,
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    pub event_id: String,
}

impl Mark {
    /// Event time first, then opt-out over opt-in, then the event id so that
    /// two distinct events at one instant still order the same everywhere.
    fn precedence(&self, other: &Self) -> Ordering {
        self.occurred_at
            .cmp(&other.occurred_at)
            .then(self.consent.rank().cmp(&other.consent.rank()))
            .then_with(|| self.event_id.cmp(&other.event_id))
    }
}

/// A change of consent, as the ledger records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentChange {
    pub event_id: String,
    pub occurred_at: OffsetDateTime,
    pub consent: Consent,
    pub scope: Scope,
}

/// Current consent of one phone number: per scope, the event that decided
/// it; and the unclear messages still awaiting a staff decision.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentState {
    pub marks: BTreeMap<String, Mark>,
    /// Open reviews by the unclear message's event id. (Absent when empty,
    /// so states written before the review queue keep their tags.)
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reviews: BTreeMap<String, PendingReview>,
}

/// An unclear message awaiting review: the program whose number it was sent
/// to (`None`: no program owns it, so it concerns every program) and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingReview {
    pub program: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
}

/// Why a send is or is not allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Allowed,
    OptedOut,
    NoConsent,
    UnknownProgram,
    UnknownCategory,
    InvalidNumber,
    Unavailable,
    /// Outside the recipient's allowed hours; `next_allowed_at` says when.
    QuietHours,
    /// A cap on messages would be broken; `next_allowed_at` says when not.
    FrequencyCap,
    /// Over one segment or 160 characters under the healthcare exemption.
    TooLongForExemption,
    /// An unclear message from the number awaits staff review, and the
    /// program holds sends until then (`unclear = "deny"`).
    ReviewPending,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub reason: Reason,
    /// Time of the deciding event; `None` when no event decided it.
    pub as_of: Option<OffsetDateTime>,
    /// When a time or volume rule denies: the first moment a send would be
    /// allowed.
    pub next_allowed_at: Option<OffsetDateTime>,
    /// When the send was reserved: the id that releases it.
    pub reservation_id: Option<String>,
}

impl Decision {
    pub fn deny(reason: Reason) -> Self {
        Decision { allowed: false, reason, as_of: None, next_allowed_at: None, reservation_id: None }
    }

    fn consent(allowed: bool, reason: Reason, as_of: Option<OffsetDateTime>) -> Self {
        Decision { allowed, reason, as_of, next_allowed_at: None, reservation_id: None }
    }

    /// Denied by a time or volume rule until `next`.
    pub fn wait(reason: Reason, as_of: Option<OffsetDateTime>, next: OffsetDateTime) -> Self {
        Decision { allowed: false, reason, as_of, next_allowed_at: Some(next), reservation_id: None }
    }
}

/// What a program assumes about a number it has no record of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DefaultConsent {
    /// No record means no consent: deny (`no_consent`).
    #[default]
    NoConsent,
    /// Consent was collected at intake: allow unless an opt-out exists.
    OptedIn,
}

impl ConsentState {
    /// Merges one change in. Returns whether anything changed.
    pub fn apply(&mut self, change: &ConsentChange) -> bool {
        let mark = Mark { consent: change.consent, occurred_at: change.occurred_at, event_id: change.event_id.clone() };
        let mut changed = false;
        for key in change.scope.keys() {
            let newer = match self.marks.get(&key) {
                Some(current) => mark.precedence(current) == Ordering::Greater,
                None => true,
            };
            if newer {
                self.marks.insert(key, mark.clone());
                changed = true;
            }
        }
        changed
    }

    /// The deciding mark for one program and category: the latest of the
    /// global, program-wide and category marks, except that a category's
    /// revocation (recorded through the API: SMS never scopes a category)
    /// stands against a later opt-in of the whole program or of all: a
    /// patient who phoned to stop billing texts is not reopened to them by
    /// texting START. Only consent recorded for that category lifts it.
    pub fn deciding_mark(&self, program: &str, category: &str) -> Option<&Mark> {
        match (self.program_mark(program), self.marks.get(&category_key(program, category))) {
            (Some(broad), Some(narrow)) if narrow.consent == Consent::OptOut && broad.consent == Consent::OptIn => {
                Some(narrow)
            }
            (broad, narrow) => [broad, narrow].into_iter().flatten().max_by(|a, b| a.precedence(b)),
        }
    }

    /// Holds an allowed decision while an unclear message awaits review: a
    /// review of this program (or of every program) from at or after the
    /// deciding event denies `review_pending`, as of the message. A later
    /// clear keyword (START, or a consent recorded for the category) decides
    /// again, by event time as always; any denial stands as it is.
    pub fn hold_for_review(&self, decision: Decision, program: &str, category: &str) -> Decision {
        if !decision.allowed {
            return decision;
        }
        let decided_at = self.deciding_mark(program, category).map(|m| m.occurred_at);
        let pending = self
            .reviews
            .values()
            .filter(|r| r.program.as_deref().is_none_or(|p| p == program))
            .filter(|r| decided_at.is_none_or(|at| r.occurred_at >= at))
            .map(|r| r.occurred_at)
            .max();
        match pending {
            Some(at) => Decision { as_of: Some(at), ..Decision::deny(Reason::ReviewPending) },
            None => decision,
        }
    }

    /// Whether the whole program (or all) is opted out now: what a
    /// conditional opt-in ("Yes") needs to be one.
    pub fn program_opted_out(&self, program: &str) -> bool {
        self.program_mark(program).is_some_and(|m| m.consent == Consent::OptOut)
    }

    /// The later of the global and program-wide marks: what the whole
    /// program's consent is.
    fn program_mark(&self, program: &str) -> Option<&Mark> {
        [self.marks.get(GLOBAL_KEY), self.marks.get(&program_key(program))]
            .into_iter()
            .flatten()
            .max_by(|a, b| a.precedence(b))
    }

    pub fn decide(&self, program: &str, category: &str, default: DefaultConsent) -> Decision {
        match self.deciding_mark(program, category) {
            Some(mark) if mark.consent == Consent::OptOut => {
                Decision::consent(false, Reason::OptedOut, Some(mark.occurred_at))
            }
            Some(mark) => Decision::consent(true, Reason::Allowed, Some(mark.occurred_at)),
            None => match default {
                DefaultConsent::OptedIn => Decision::consent(true, Reason::Allowed, None),
                DefaultConsent::NoConsent => Decision::deny(Reason::NoConsent),
            },
        }
    }

    /// Whether an opt-out at or after `at` covers the whole program (or,
    /// with no program, every program): then a reply to an event at `at`
    /// that is not itself the opt-out's confirmation must not go out. An
    /// opt-out wins a tie, as everywhere.
    pub fn opted_out_since(&self, program: Option<&str>, at: OffsetDateTime) -> bool {
        let program_mark = program.and_then(|p| self.marks.get(&program_key(p)));
        [self.marks.get(GLOBAL_KEY), program_mark]
            .into_iter()
            .flatten()
            .any(|mark| mark.consent == Consent::OptOut && mark.occurred_at >= at)
    }

    /// True when no consent event has been recorded.
    pub fn is_empty(&self) -> bool {
        self.marks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    fn change(id: &str, at: OffsetDateTime, consent: Consent, scope: Scope) -> ConsentChange {
        ConsentChange { event_id: id.into(), occurred_at: at, consent, scope }
    }

    fn clinic() -> Scope {
        Scope::Program { program: "clinic".into() }
    }

    #[test]
    fn a_number_with_no_record_follows_the_program_default() {
        let state = ConsentState::default();
        assert_eq!(state.decide("clinic", "billing", DefaultConsent::NoConsent).reason, Reason::NoConsent);
        let intake = state.decide("clinic", "billing", DefaultConsent::OptedIn);
        assert!(intake.allowed);
        assert_eq!(intake.as_of, None);
    }

    #[test]
    fn an_opt_out_beats_the_intake_default() {
        let mut state = ConsentState::default();
        state.apply(&change("a", datetime!(2026-01-01 10:00 UTC), Consent::OptOut, clinic()));
        let d = state.decide("clinic", "billing", DefaultConsent::OptedIn);
        assert_eq!((d.allowed, d.reason), (false, Reason::OptedOut));
        assert_eq!(d.as_of, Some(datetime!(2026-01-01 10:00 UTC)));
    }

    #[test]
    fn a_late_arriving_older_opt_in_does_not_undo_a_newer_opt_out() {
        let mut state = ConsentState::default();
        state.apply(&change("stop", datetime!(2026-01-02 10:00 UTC), Consent::OptOut, clinic()));
        let changed = state.apply(&change("start", datetime!(2026-01-01 10:00 UTC), Consent::OptIn, clinic()));
        assert!(!changed);
        assert_eq!(state.decide("clinic", "x", DefaultConsent::NoConsent).reason, Reason::OptedOut);
    }

    #[test]
    fn an_opt_out_wins_a_tie() {
        let at = datetime!(2026-01-01 10:00 UTC);
        for order in [[0, 1], [1, 0]] {
            let events =
                [change("zzz-start", at, Consent::OptIn, clinic()), change("aaa-stop", at, Consent::OptOut, clinic())];
            let mut state = ConsentState::default();
            for i in order {
                state.apply(&events[i]);
            }
            assert_eq!(state.decide("clinic", "x", DefaultConsent::OptedIn).reason, Reason::OptedOut);
        }
    }

    #[test]
    fn stop_all_covers_every_program_and_start_reopens_only_its_own() {
        let mut state = ConsentState::default();
        state.apply(&change("all", datetime!(2026-01-01 10:00 UTC), Consent::OptOut, Scope::All));
        state.apply(&change("start", datetime!(2026-01-02 10:00 UTC), Consent::OptIn, clinic()));
        assert!(state.decide("clinic", "billing", DefaultConsent::NoConsent).allowed);
        assert_eq!(state.decide("pharmacy", "refills", DefaultConsent::OptedIn).reason, Reason::OptedOut);
    }

    #[test]
    fn category_consent_after_a_program_stop_reopens_only_that_category() {
        let mut state = ConsentState::default();
        state.apply(&change("stop", datetime!(2026-01-01 10:00 UTC), Consent::OptOut, clinic()));
        state.apply(&change(
            "form",
            datetime!(2026-01-02 10:00 UTC),
            Consent::OptIn,
            Scope::Categories { program: "clinic".into(), categories: vec!["reminders".into()] },
        ));
        assert!(state.decide("clinic", "reminders", DefaultConsent::NoConsent).allowed);
        assert!(!state.decide("clinic", "billing", DefaultConsent::NoConsent).allowed);
    }

    fn arb_change() -> impl Strategy<Value = ConsentChange> {
        let scope = prop_oneof![
            Just(Scope::All),
            Just(Scope::Program { program: "a".into() }),
            Just(Scope::Program { program: "b".into() }),
            Just(Scope::Categories { program: "a".into(), categories: vec!["x".into(), "y".into()] }),
        ];
        let consent = prop_oneof![Just(Consent::OptIn), Just(Consent::OptOut)];
        // Few distinct instants, so ties between events are common.
        (0u8..20, 0i64..4, consent, scope).prop_map(|(id, minute, consent, scope)| ConsentChange {
            event_id: format!("e{id}"),
            occurred_at: datetime!(2026-01-01 00:00 UTC) + time::Duration::minutes(minute),
            consent,
            scope,
        })
    }

    proptest! {
        #[test]
        fn any_permutation_and_duplication_gives_the_same_state(
            changes in proptest::collection::vec(arb_change(), 0..12),
            seed in any::<u64>(),
            duplicates in proptest::collection::vec(any::<proptest::sample::Index>(), 0..6),
        ) {
            // Event ids identify events: keep the first change per id.
            let mut seen = std::collections::HashSet::new();
            let changes: Vec<_> = changes.into_iter().filter(|c| seen.insert(c.event_id.clone())).collect();

            let mut in_order = ConsentState::default();
            for c in &changes {
                in_order.apply(c);
            }

            let mut shuffled = changes.clone();
            for d in &duplicates {
                if !changes.is_empty() {
                    shuffled.push(changes[d.index(changes.len())].clone());
                }
            }
            let mut rng = seed;
            for i in (1..shuffled.len()).rev() {
                rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                shuffled.swap(i, (rng >> 33) as usize % (i + 1));
            }
            let mut permuted = ConsentState::default();
            for c in &shuffled {
                permuted.apply(c);
            }
            prop_assert_eq!(in_order, permuted);
        }
    }

    /// 10:00 on a fixed day, plus `m` minutes.
    fn t(m: i64) -> OffsetDateTime {
        time::macros::datetime!(2026-03-01 10:00 UTC) + time::Duration::minutes(m)
    }

    #[test]
    fn a_later_opt_out_of_the_program_or_all_supersedes_a_reply() {
        let lakeside = || Scope::Program { program: "lakeside".into() };
        let mut state = ConsentState::default();
        state.apply(&change("start", t(0), Consent::OptIn, lakeside()));
        assert!(!state.opted_out_since(Some("lakeside"), t(0)), "its own opt-in does not supersede it");
        state.apply(&change("stop", t(2), Consent::OptOut, lakeside()));
        assert!(state.opted_out_since(Some("lakeside"), t(0)), "a later STOP does");
        assert!(state.opted_out_since(Some("lakeside"), t(2)), "an opt-out wins a tie");
        assert!(
            !state.opted_out_since(Some("lakeside"), t(3)),
            "an earlier STOP does not (HELP after STOP is answered)"
        );
        assert!(!state.opted_out_since(Some("other"), t(0)), "another program's STOP does not");
        let billing = Scope::Categories { program: "other".into(), categories: vec!["billing".into()] };
        state.apply(&change("revoke", t(4), Consent::OptOut, billing));
        assert!(!state.opted_out_since(Some("other"), t(0)), "one category's revocation does not");
        state.apply(&change("stop-all", t(5), Consent::OptOut, Scope::All));
        assert!(state.opted_out_since(Some("other"), t(0)) && state.opted_out_since(None, t(0)), "STOP ALL does");
    }

    #[test]
    fn an_open_review_holds_an_allowed_send_until_a_later_event_decides() {
        let mut state = ConsentState::default();
        state.apply(&change("start", t(0), Consent::OptIn, clinic()));
        let review = |program: Option<&str>, at| PendingReview { program: program.map(Into::into), occurred_at: at };
        let held = |state: &ConsentState, program: &str| {
            state.hold_for_review(state.decide(program, "x", DefaultConsent::OptedIn), program, "x")
        };
        state.reviews.insert("unclear".into(), review(Some("clinic"), t(5)));
        let d = held(&state, "clinic");
        assert_eq!((d.allowed, d.reason, d.as_of), (false, Reason::ReviewPending, Some(t(5))));
        assert_eq!(held(&state, "pharmacy").reason, Reason::Allowed, "another program's review does not hold");
        state.reviews.insert("unowned".into(), review(None, t(6)));
        assert_eq!(held(&state, "pharmacy").reason, Reason::ReviewPending, "a review of no program holds every one");
        state.apply(&change("start-again", t(9), Consent::OptIn, Scope::All));
        assert_eq!(held(&state, "clinic").reason, Reason::Allowed, "a later START decides again");
        state.apply(&change("stop", t(10), Consent::OptOut, clinic()));
        assert_eq!(held(&state, "clinic").reason, Reason::OptedOut, "a denial stands as it is");
        state.reviews.insert("late".into(), review(Some("clinic"), t(11)));
        assert_eq!(held(&state, "clinic").reason, Reason::OptedOut);
    }

    #[test]
    fn a_state_without_reviews_serializes_as_before_the_queue() {
        let mut state = ConsentState::default();
        state.apply(&change("a", t(0), Consent::OptIn, clinic()));
        assert!(!serde_json::to_string(&state).unwrap().contains("reviews"));
    }

    #[test]
    fn a_category_revoked_through_the_api_is_not_reopened_by_a_program_start() {
        let billing = || Scope::Categories { program: "clinic".into(), categories: vec!["billing".into()] };
        let program = || Scope::Program { program: "clinic".into() };
        let mut state = ConsentState::default();
        state.apply(&change("phone-call", t(0), Consent::OptOut, billing()));
        state.apply(&change("sms-start", t(5), Consent::OptIn, program()));
        assert_eq!(state.decide("clinic", "billing", DefaultConsent::OptedIn).reason, Reason::OptedOut);
        assert_eq!(state.decide("clinic", "reminders", DefaultConsent::OptedIn).reason, Reason::Allowed);
        assert!(!state.program_opted_out("clinic"));
        state.apply(&change("form", t(9), Consent::OptIn, billing()));
        assert_eq!(
            state.decide("clinic", "billing", DefaultConsent::OptedIn).reason,
            Reason::Allowed,
            "consent for the category lifts it"
        );
        state.apply(&change("sms-stop", t(12), Consent::OptOut, program()));
        assert_eq!(
            state.decide("clinic", "billing", DefaultConsent::OptedIn).reason,
            Reason::OptedOut,
            "a later STOP wins"
        );
        assert!(state.program_opted_out("clinic"));
    }
}
