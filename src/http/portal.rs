//! The patient preference page: `POST /v1/preference-links` (scope
//! `record`) makes a link; `GET /p/{token}` shows the page and
//! `POST /p/{token}` records a choice. Server-rendered (maud), no
//! JavaScript, one inline stylesheet allowed by its hash; every answer of
//! `/p/` carries the same security headers. The token is never logged: a
//! link is named by its hash prefix.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration as StdDuration, Instant};

use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use maud::{html, Markup, PreEscaped, DOCTYPE};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::error::{ApiError, ProblemResponses};
use super::extract::{scope, Caller, JsonBody};
use super::{read_body, AppState, GatewayContext};
use crate::config::Config;
use crate::domain::keywords::Language;
use crate::service::evidence::mask_number;
use crate::service::preferences::{is_on, CategoryChoice, LinkError, OpenLink, PreferenceChoice};
use crate::service::ServiceError;

/// The most a page's form may send.
const MAX_FORM_BYTES: usize = 4 * 1024;
/// Page views one link may make per minute (per process), besides its
/// submissions (`preferences.submissions_per_minute`).
const VIEWS_PER_MINUTE: u32 = 60;
/// Links the limiter tracks at once before it forgets the idle ones.
const MAX_TRACKED_LINKS: usize = 10_000;

/// The page's one stylesheet; the CSP allows exactly it (by hash).
const STYLE: &str = "\
:root{color-scheme:light}\
*{box-sizing:border-box}\
body{margin:0;font:1.125rem/1.5 system-ui,-apple-system,\"Segoe UI\",Roboto,sans-serif;color:#1a1a1a;background:#fff}\
main{max-width:38rem;margin:0 auto;padding:1rem}\
h1{font-size:1.5rem;line-height:1.25;margin:.25rem 0 .5rem}\
h2{font-size:1.2rem;margin:1.5rem 0 .5rem}\
.org{margin:0;color:#3d3d3d}\
a{color:#0a4a94}\
a:focus,button:focus,input:focus{outline:3px solid #b35900;outline-offset:2px}\
ul{padding:0;list-style:none}\
.cats li{display:flex;justify-content:space-between;gap:1rem;padding:.5rem 0;border-bottom:1px solid #8a8a8a}\
.on{font-weight:700;color:#1d5e20}\
.off{font-weight:700;color:#a1261b}\
fieldset{border:1px solid #6b6b6b;border-radius:.5rem;padding:.75rem 1rem;margin:0}\
legend{font-weight:700;padding:0 .25rem}\
.choice{display:flex;gap:.6rem;align-items:flex-start;padding:.5rem 0}\
.choice input{width:1.4rem;height:1.4rem;margin:.15rem 0 0;flex:none}\
.wording{margin:.25rem 0 0;font-size:1rem;color:#2e2e2e}\
button{margin-top:1rem;font:inherit;font-weight:700;color:#fff;background:#0a4a94;border:0;border-radius:.5rem;padding:.75rem 1.25rem;min-height:3rem;width:100%}\
.done{border-left:.4rem solid #1d5e20;padding:.5rem .75rem;margin:1rem 0;background:#eef7ee}\
.help{font-size:1rem;color:#3d3d3d}";

static CSP: LazyLock<String> = LazyLock::new(|| {
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(STYLE.as_bytes()));
    format!(
        "default-src 'none'; style-src 'sha256-{hash}'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
});

/// The page's settings, from `[preferences]` and the programs' wording.
pub struct Portal {
    link_ttl: time::Duration,
    public_base_url: Option<String>,
    /// Per program: its resume wording in English and Spanish.
    wording: HashMap<String, (String, String)>,
    limiter: Limiter,
}

impl Portal {
    /// None when `[preferences] enabled = false`.
    pub fn from_config(config: &Config) -> Option<Self> {
        let p = &config.preferences;
        p.enabled.then(|| Portal {
            link_ttl: time::Duration::days(i64::from(p.link_ttl_days)),
            public_base_url: p.public_base_url.as_deref().map(|u| u.trim_end_matches('/').to_owned()),
            wording: config
                .programs
                .iter()
                .map(|c| (c.id.clone(), (c.resume_wording(Language::En), c.resume_wording(Language::Es))))
                .collect(),
            limiter: Limiter::new(p.submissions_per_minute),
        })
    }

    fn wording(&self, program: &str, es: bool) -> &str {
        match self.wording.get(program) {
            Some((_, es_text)) if es => es_text,
            Some((en, _)) => en,
            None => "",
        }
    }
}

/// A fixed one-minute window per link and kind, in this process (on Lambda
/// each warm instance counts on its own; API Gateway's stage throttling
/// bounds the rest).
struct Limiter {
    submissions_per_minute: u32,
    windows: Mutex<HashMap<(String, bool), (Instant, u32)>>,
}

impl Limiter {
    fn new(submissions_per_minute: u32) -> Self {
        Limiter { submissions_per_minute, windows: Mutex::new(HashMap::new()) }
    }

    /// Counts one request of the link; false once it is over its limit.
    fn allow(&self, link: &str, submission: bool) -> bool {
        let limit = if submission { self.submissions_per_minute } else { VIEWS_PER_MINUTE };
        let now = Instant::now();
        let minute = StdDuration::from_secs(60);
        let Ok(mut windows) = self.windows.lock() else { return false };
        if windows.len() >= MAX_TRACKED_LINKS {
            windows.retain(|_, (start, _)| now.duration_since(*start) < minute);
            if windows.len() >= MAX_TRACKED_LINKS {
                return false;
            }
        }
        let entry = windows.entry((link.to_owned(), submission)).or_insert((now, 0));
        if now.duration_since(entry.0) >= minute {
            *entry = (now, 0);
        }
        entry.1 += 1;
        entry.1 <= limit
    }
}

// ------------------------------------------------------------ the link route

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreferenceLinkRequest {
    /// The patient's number, E.164.
    #[schema(pattern = r"^\+[1-9][0-9]{6,14}$", example = "+14155550123")]
    pub to: String,
    /// The program whose choices the page offers.
    pub program: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PreferenceLinkAnswer {
    /// The page's URL (short enough for an SMS); opens it until `expires_at`.
    pub url: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// Make a link to the patient preference page of a number and program. The
/// request is recorded in the number's ledger (`preference_link`).
#[utoipa::path(
    post, path = "/v1/preference-links", tag = "consents", request_body = PreferenceLinkRequest,
    responses(
        (status = 201, description = "A new link", body = PreferenceLinkAnswer),
        ProblemResponses,
    ),
    security(("api_key" = []))
)]
pub async fn make_link(
    State(state): State<AppState>,
    caller: Caller<scope::Record>,
    request: axum::http::Extensions,
    JsonBody(r): JsonBody<PreferenceLinkRequest>,
) -> Result<(StatusCode, Json<PreferenceLinkAnswer>), ApiError> {
    let portal = state.portal.as_ref().ok_or(ApiError::NotFound)?;
    let base = match (&portal.public_base_url, &state.public_base_url) {
        (Some(base), _) => base.clone(),
        (None, Some(base)) => base.to_string(),
        (None, None) => {
            GatewayContext::of(&request).api_url().ok_or(ApiError::Misconfigured("preferences.public_base_url"))?
        }
    };
    let (token, expires_at) =
        state.service.make_preference_link(&r.to, &r.program, portal.link_ttl, &caller.name).await?;
    Ok((StatusCode::CREATED, Json(PreferenceLinkAnswer { url: format!("{base}/p/{token}"), expires_at })))
}

// --------------------------------------------------------------- the page

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    lang: Option<String>,
}

/// Every answer of `/p/`: no caching, no framing, no referrer, nothing
/// but the one stylesheet.
fn secured(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let csp = HeaderValue::from_str(&CSP).unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"));
    headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    secured((status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

const INVALID: &str = "This link is not valid. It may have expired, or it was copied incompletely.\n\
To stop text messages, reply STOP to any text from us. For help, reply HELP.\n\n\
Este enlace no es válido. Para dejar de recibir mensajes de texto, responda STOP a cualquier mensaje nuestro. \
Para obtener ayuda, responda HELP.\n";
const EXPIRED: &str = "This link has expired.\n\
To stop text messages, reply STOP to any text from us. For help, reply HELP.\n\n\
Este enlace ha caducado. Para dejar de recibir mensajes de texto, responda STOP a cualquier mensaje nuestro. \
Para obtener ayuda, responda HELP.\n";
const CHOOSE: &str = "Choose one of the options, then save. Go back to the page to choose.\n\n\
Elija una de las opciones y guarde. Vuelva a la página para elegir.\n";
const SAVED: &str = "Saved: your choice has been recorded.\n\nSu elección quedó guardada.\n";
const TOO_MANY: &str = "Too many requests for this link. Wait a minute and try again.\n\
To stop text messages, you can also reply STOP to any text from us.\n";
const UNAVAILABLE: &str = "The page is not available right now. Try again later.\n\
To stop text messages, reply STOP to any text from us.\n";
const STALE_FORM: &str = "This form is no longer valid. Open the link from your text message again.\n\
To stop text messages, you can also reply STOP to any text from us.\n";

fn unavailable(error: &ServiceError) -> Response {
    tracing::error!(error = %error, "preference page failed");
    plain(StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE)
}

/// The link's hash prefix, for logs, from a token that verified.
async fn open(state: &AppState, token: &str, submission: bool) -> Result<OpenLink, Response> {
    let Some(portal) = state.portal.as_ref() else {
        return Err(plain(StatusCode::NOT_FOUND, INVALID));
    };
    let Some(id) = state.service.verify_link_token(token) else {
        tracing::info!("preference page: a link that does not verify");
        return Err(plain(StatusCode::NOT_FOUND, INVALID));
    };
    if !portal.limiter.allow(&id.hash(), submission) {
        tracing::warn!(link = %id.log_prefix(), submission, "preference page: rate limited");
        let mut response = plain(StatusCode::TOO_MANY_REQUESTS, TOO_MANY);
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
        return Err(response);
    }
    match state.service.open_link(token).await {
        Ok(link) => Ok(link),
        Err(LinkError::Invalid) => {
            tracing::info!(link = %id.log_prefix(), "preference page: unknown link");
            Err(plain(StatusCode::NOT_FOUND, INVALID))
        }
        Err(LinkError::Expired) => {
            tracing::info!(link = %id.log_prefix(), "preference page: expired link");
            Err(plain(StatusCode::GONE, EXPIRED))
        }
        Err(LinkError::Service(e)) => Err(unavailable(&e)),
    }
}

/// `GET /p/{token}`: the page. A path that is not text is an unknown
/// link; a query that does not parse asks for no language.
pub async fn page(
    State(state): State<AppState>,
    token: Result<Path<String>, PathRejection>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Response {
    let Ok(Path(token)) = token else {
        return plain(StatusCode::NOT_FOUND, INVALID);
    };
    let link = match open(&state, &token, false).await {
        Ok(link) => link,
        Err(response) => return response,
    };
    let lang = query.ok().and_then(|Query(q)| q.lang);
    let es = wants_spanish(&state, &link, lang.as_deref());
    render(&state, &link, es, None).await
}

/// `POST /p/{token}`: records the choice, then shows the page again with
/// what changed.
pub async fn submit(
    State(state): State<AppState>,
    token: Result<Path<String>, PathRejection>,
    request: Request,
) -> Response {
    let Ok(Path(token)) = token else {
        return plain(StatusCode::NOT_FOUND, INVALID);
    };
    let link = match open(&state, &token, true).await {
        Ok(link) => link,
        Err(response) => return response,
    };
    let (parts, body) = request.into_parts();
    let form = match read_form(&parts.headers, body).await {
        Ok(form) => form,
        Err(response) => return response,
    };
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let es = wants_spanish(&state, &link, field("lang"));
    let Some(nonce) = field("form").filter(|f| state.service.check_form_token(&link, f)) else {
        tracing::warn!(link = %link.id.log_prefix(), "preference page: a form token that does not verify");
        return plain(StatusCode::FORBIDDEN, STALE_FORM);
    };
    let Some(portal) = state.portal.as_ref() else {
        return plain(StatusCode::NOT_FOUND, INVALID);
    };
    let choice = match field("choice") {
        Some("stop_program") => PreferenceChoice::StopProgram,
        Some("stop_all") => PreferenceChoice::StopAll,
        Some("resume") => PreferenceChoice::Resume { wording: portal.wording(&link.program, es).to_owned() },
        Some(other) => match other.strip_prefix("stop:") {
            Some(category) => PreferenceChoice::StopCategory(category.to_owned()),
            None => return plain(StatusCode::BAD_REQUEST, CHOOSE),
        },
        // The choices are `required`: only a hand-made form lands here, and
        // it is answered without reading (or recording a read of) the state.
        None => return plain(StatusCode::BAD_REQUEST, CHOOSE),
    };
    match state.service.record_preference(&link, &choice, nonce).await {
        Ok(_) => render(&state, &link, es, Some(Notice::Done(choice))).await,
        Err(ServiceError::Invalid(_)) => plain(StatusCode::BAD_REQUEST, CHOOSE),
        Err(e) => unavailable(&e),
    }
}

async fn read_form(headers: &HeaderMap, body: Body) -> Result<Vec<(String, String)>, Response> {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_FORM_BYTES as u64) {
        return Err(plain(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large.\n"));
    }
    let bytes =
        read_body(headers, body).await.map_err(|_| plain(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large.\n"))?;
    if bytes.len() > MAX_FORM_BYTES {
        return Err(plain(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large.\n"));
    }
    Ok(form_urlencoded::parse(&bytes).into_owned().collect())
}

/// Spanish when asked for and the program has Spanish templates.
fn wants_spanish(state: &AppState, link: &OpenLink, lang: Option<&str>) -> bool {
    lang == Some("es") && has_spanish(state, link)
}

fn has_spanish(state: &AppState, link: &OpenLink) -> bool {
    state.service.link_program(link).is_ok_and(|p| p.replies.languages().any(|l| l == Language::Es))
}

enum Notice {
    Done(PreferenceChoice),
}

/// `appointment_reminders` -> `Appointment reminders`.
fn category_name(category: &str) -> String {
    let spaced = category.replace(['_', '-'], " ");
    let mut chars = spaced.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => spaced,
    }
}

/// The page's words, in English or Spanish.
struct Words {
    es: bool,
}

impl Words {
    fn t<'a>(&self, en: &'a str, es: &'a str) -> &'a str {
        if self.es {
            es
        } else {
            en
        }
    }
}

/// The page, with what just changed if anything did. A choice already
/// recorded is never reported as a failure: if the page cannot be shown
/// after it, a plain "saved" page is.
async fn render(state: &AppState, link: &OpenLink, es: bool, notice: Option<Notice>) -> Response {
    let (program, categories, form) = match (
        state.service.link_program(link),
        state.service.preference_view(link).await,
        state.service.form_token(link),
    ) {
        (Ok(p), Ok(c), Ok(f)) => (p, c, f),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) if notice.is_some() => {
            tracing::error!(error = %e, "preference page: recorded, but the page could not be shown");
            return plain(StatusCode::OK, SAVED);
        }
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return unavailable(&e),
    };
    let wording = state.portal.as_ref().map_or("", |p| p.wording(&link.program, es));
    let markup = page_markup(&PageParts {
        words: Words { es },
        spanish: has_spanish(state, link),
        program: &program.letterhead.program,
        organization: &program.letterhead.organization,
        masked: &mask_number(&link.number),
        categories: &categories,
        form: &form,
        wording,
        notice: notice.as_ref(),
    });
    secured(
        (StatusCode::OK, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], markup.into_string()).into_response(),
    )
}

struct PageParts<'a> {
    words: Words,
    spanish: bool,
    program: &'a str,
    organization: &'a str,
    masked: &'a str,
    categories: &'a [CategoryChoice],
    form: &'a str,
    wording: &'a str,
    notice: Option<&'a Notice>,
}

fn page_markup(p: &PageParts<'_>) -> Markup {
    let w = &p.words;
    let any_on = p.categories.iter().any(|c| is_on(&c.decision));
    let any_off = p.categories.iter().any(|c| !is_on(&c.decision));
    let lang = if w.es { "es" } else { "en" };
    html! {
        (DOCTYPE)
        html lang=(lang) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                meta name="robots" content="noindex, nofollow";
                title { (w.t("Your text messages", "Sus mensajes de texto")) " – " (p.program) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                main {
                    p.org { (p.organization) }
                    h1 { (w.t("Your text messages from ", "Sus mensajes de texto de ")) (p.program) }
                    p { (w.t("For the phone number ", "Para el número de teléfono ")) span #number { (p.masked) } }
                    @if p.spanish {
                        @if w.es {
                            p { a href="?lang=en" lang="en" hreflang="en" { "Read this page in English" } }
                        } @else {
                            p { a href="?lang=es" lang="es" hreflang="es" { "Ver esta página en español" } }
                        }
                    }
                    @match p.notice {
                        Some(Notice::Done(choice)) => {
                            div.done #notice role="status" { p { (done_text(w, choice, p)) } }
                        }
                        None => {}
                    }
                    h2 #now { (w.t("What you receive now", "Lo que recibe ahora")) }
                    ul.cats aria-labelledby="now" {
                        @for c in p.categories {
                            li data-category=(c.category) {
                                span { (category_name(&c.category)) }
                                @if is_on(&c.decision) {
                                    span.on { (w.t("On", "Activado")) }
                                } @else {
                                    span.off { (w.t("Off", "Desactivado")) }
                                }
                            }
                        }
                    }
                    form method="post" {
                        input type="hidden" name="form" value=(p.form);
                        input type="hidden" name="lang" value=(lang);
                        fieldset {
                            legend { (w.t("What would you like to do?", "¿Qué desea hacer?")) }
                            @for c in p.categories.iter().filter(|c| is_on(&c.decision)) {
                                @let id = format!("stop-{}", c.category);
                                div.choice {
                                    input type="radio" name="choice" id=(id) value=(format!("stop:{}", c.category)) required;
                                    label for=(id) {
                                        (w.t("Stop ", "Dejar de recibir ")) (category_name(&c.category))
                                        (w.t(" texts", ""))
                                    }
                                }
                            }
                            @if any_on {
                                div.choice {
                                    input type="radio" name="choice" id="stop-program" value="stop_program" required;
                                    label for="stop-program" { (w.t("Stop all texts from ", "Dejar de recibir todos los mensajes de ")) (p.program) }
                                }
                            }
                            @if any_off {
                                div.choice {
                                    input type="radio" name="choice" id="resume" value="resume" aria-describedby="resume-wording" required;
                                    div {
                                        label for="resume" { (w.t("Resume all texts from ", "Reanudar todos los mensajes de ")) (p.program) }
                                        p.wording #resume-wording { (p.wording) }
                                    }
                                }
                            }
                            div.choice {
                                input type="radio" name="choice" id="stop-all" value="stop_all" required;
                                label for="stop-all" { (w.t("Stop all texts from ", "Dejar de recibir todos los mensajes de ")) (p.organization) }
                            }
                        }
                        button type="submit" { (w.t("Save my choice", "Guardar mi elección")) }
                    }
                    p.help {
                        (w.t("You can also reply STOP to any text from us to stop, or HELP for help.",
                             "También puede responder STOP a cualquier mensaje nuestro para dejar de recibirlos, o HELP para obtener ayuda."))
                    }
                }
            }
        }
    }
}

fn done_text(w: &Words, choice: &PreferenceChoice, p: &PageParts<'_>) -> String {
    match choice {
        PreferenceChoice::StopCategory(category) => format!(
            "{}{}{}{}.",
            w.t("Saved. You will no longer get ", "Guardado. Ya no recibirá mensajes de "),
            category_name(category),
            w.t(" texts from ", " de "),
            p.program
        ),
        PreferenceChoice::StopProgram => format!(
            "{}{}.",
            w.t("Saved. You will no longer get any texts from ", "Guardado. Ya no recibirá mensajes de "),
            p.program
        ),
        PreferenceChoice::Resume { .. } => {
            format!(
                "{}{}{}",
                w.t("Saved. Texts from ", "Guardado. Los mensajes de "),
                p.program,
                w.t(" are back on.", " se reanudaron.")
            )
        }
        PreferenceChoice::StopAll => format!(
            "{}{}.",
            w.t("Saved. You will no longer get any texts from ", "Guardado. Ya no recibirá mensajes de "),
            p.organization
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limiter_counts_per_link_and_kind_within_a_minute() {
        let limiter = Limiter::new(2);
        assert!(limiter.allow("a", true) && limiter.allow("a", true));
        assert!(!limiter.allow("a", true), "the third submission in a minute");
        assert!(limiter.allow("b", true), "another link has its own window");
        assert!(limiter.allow("a", false), "views count apart");
    }

    #[test]
    fn category_names_read_as_words() {
        assert_eq!(category_name("appointment_reminders"), "Appointment reminders");
        assert_eq!(category_name("lab-results"), "Lab results");
    }

    #[test]
    fn the_csp_allows_exactly_the_inline_stylesheet() {
        let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(STYLE.as_bytes()));
        assert!(CSP.contains(&format!("style-src 'sha256-{hash}'")) && CSP.starts_with("default-src 'none'"));
        assert!(!CSP.contains("script-src") && CSP.contains("frame-ancestors 'none'"));
    }
}
