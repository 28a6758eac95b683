//! `POST /v1/consents/evidence`: the signed evidence bundle of a number
//! (see `service::evidence`), as JSON or, with `Accept: application/pdf`,
//! as a PDF a person can read. The number travels only in the body.
//!
//! The PDF uses the PDF base-14 fonts (Helvetica, Courier) so no font file
//! is embedded; they show Latin-1 text (WinAnsiEncoding), and anything else
//! is written as `<U+XXXX>`. The signed JSON bundle stays the authoritative
//! copy, and the PDF says so.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str};
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::consents::NumberRequest;
use super::error::{ApiError, ProblemResponses};
use super::extract::{scope, Caller, JsonBody};
use super::AppState;
use crate::service::evidence::{BundleSignature, EvidenceBundle, EvidenceEvent, SignedBundle};

/// A signed evidence bundle. To verify it: base64-decode `bundle_b64`, check
/// the Ed25519 `signature` over exactly those bytes with the published key
/// named by `signature.key_id` (`sms-consent evidence-public-key`), then
/// read the bundle from those bytes (UTF-8 JSON). `bundle` is the same
/// content, decoded for convenience; it is not what was signed.
#[derive(Debug, Serialize, ToSchema)]
pub struct EvidenceAnswer {
    /// The signed bytes (compact UTF-8 JSON of the bundle), base64.
    pub bundle_b64: String,
    pub signature: BundleSignature,
    pub bundle: EvidenceBundle,
}

/// The bundle as a PDF document.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
pub struct PdfDocument(Vec<u8>);

/// The signed evidence bundle of a number: every event, the replies and
/// their delivery, the programs' wording, the chain verification. The
/// export is recorded (`evidence_export`, with the caller).
#[utoipa::path(
    post, path = "/v1/consents/evidence", tag = "consents", request_body = NumberRequest,
    responses(
        (status = 200, description = "The signed bundle; a PDF rendering of it with `Accept: application/pdf`",
            content((EvidenceAnswer = "application/json"), (PdfDocument = "application/pdf"))),
        ProblemResponses,
    ),
    security(("api_key" = []))
)]
pub async fn export(
    State(state): State<AppState>,
    caller: Caller<scope::ReadHistory>,
    headers: HeaderMap,
    JsonBody(r): JsonBody<NumberRequest>,
) -> Result<Response, ApiError> {
    let pdf = wants_pdf(&headers);
    let signed = state.service.evidence(&r.to, &caller.name).await?;
    let mut response = if pdf {
        let name = format!(
            "attachment; filename=\"evidence-{}.pdf\"",
            signed.bundle.number.blind_index.chars().take(8).collect::<String>()
        );
        let mut response = (StatusCode::OK, Body::from(render_pdf(&signed))).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/pdf"));
        if let Ok(value) = HeaderValue::from_str(&name) {
            headers.insert(header::CONTENT_DISPOSITION, value);
        }
        response
    } else {
        let answer = EvidenceAnswer {
            bundle_b64: STANDARD.encode(&signed.bytes),
            signature: signed.signature,
            bundle: signed.bundle,
        };
        axum::Json(answer).into_response()
    };
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Whether the caller prefers a PDF: `application/pdf` in `Accept` with a
/// quality above JSON's (and above 0); anything else gets JSON.
fn wants_pdf(headers: &HeaderMap) -> bool {
    let mut pdf: Option<f32> = None;
    let mut json: Option<f32> = None;
    for value in headers.get_all(header::ACCEPT) {
        let Ok(value) = value.to_str() else { continue };
        for range in value.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q=").and_then(|q| q.trim().parse::<f32>().ok()))
                .next()
                .unwrap_or(1.0);
            let slot = match media.as_str() {
                "application/pdf" => &mut pdf,
                "application/json" | "application/*" | "*/*" => &mut json,
                _ => continue,
            };
            *slot = Some(slot.map_or(q, |old: f32| old.max(q)));
        }
    }
    match pdf {
        Some(q) if q > 0.0 => json.is_none_or(|j| q >= j),
        _ => false,
    }
}

// ---- The PDF ----------------------------------------------------------

const PAGE_WIDTH: f32 = 612.0; // US Letter
const PAGE_HEIGHT: f32 = 792.0;
const MARGIN: f32 = 50.0;

#[derive(Clone, Copy)]
enum Font {
    Regular,
    Bold,
    Mono,
}

impl Font {
    fn name(self) -> Name<'static> {
        match self {
            Font::Regular => Name(b"F1"),
            Font::Bold => Name(b"F2"),
            Font::Mono => Name(b"F3"),
        }
    }

    /// How many characters fit on a line at `size` (Courier: 0.6 em each;
    /// Helvetica: a conservative 0.55 em average).
    fn chars_per_line(self, size: f32) -> usize {
        let em = match self {
            Font::Mono => 0.6,
            Font::Regular | Font::Bold => 0.55,
        };
        ((PAGE_WIDTH - 2.0 * MARGIN) / (size * em)) as usize
    }
}

/// Text in WinAnsiEncoding: what the base-14 fonts show; every other
/// character as `<U+XXXX>`.
fn win_ansi(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        let byte = match c {
            ' '..='~' => Some(c as u8),
            '\u{a0}'..='\u{ff}' => Some(c as u32 as u8),
            '€' => Some(0x80),
            '‚' => Some(0x82),
            '„' => Some(0x84),
            '…' => Some(0x85),
            '‘' => Some(0x91),
            '’' => Some(0x92),
            '“' => Some(0x93),
            '”' => Some(0x94),
            '•' => Some(0x95),
            '–' => Some(0x96),
            '—' => Some(0x97),
            _ => None,
        };
        match byte {
            Some(b) => out.push(b),
            None => out.extend_from_slice(format!("<U+{:04X}>", c as u32).as_bytes()),
        }
    }
    out
}

/// Breaks `text` into lines of at most `width` characters, at spaces where
/// it can (as shown: escaped characters count at their escaped length).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(10);
    let mut lines = Vec::new();
    for paragraph in text.split('\n') {
        let mut line = String::new();
        for word in paragraph.split(' ') {
            let shown = |s: &str| win_ansi(s).len();
            if !line.is_empty() && shown(&line) + 1 + shown(word) > width {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
            while shown(&line) > width {
                let mut head = String::new();
                let mut rest = line.chars();
                for c in rest.by_ref() {
                    head.push(c);
                    if shown(&head) >= width {
                        break;
                    }
                }
                lines.push(head);
                line = rest.collect();
            }
        }
        lines.push(line);
    }
    lines
}

/// Pages of text, laid out top to bottom.
struct Layout {
    pages: Vec<Content>,
    current: Content,
    y: f32,
}

impl Layout {
    fn new() -> Self {
        Layout { pages: Vec::new(), current: Content::new(), y: PAGE_HEIGHT - MARGIN }
    }

    fn new_page(&mut self) {
        let done = std::mem::replace(&mut self.current, Content::new());
        self.pages.push(done);
        self.y = PAGE_HEIGHT - MARGIN;
    }

    fn line(&mut self, font: Font, size: f32, text: &str) {
        let leading = size * 1.3;
        if self.y - leading < MARGIN {
            self.new_page();
        }
        self.y -= leading;
        self.current.begin_text();
        self.current.set_font(font.name(), size);
        self.current.next_line(MARGIN, self.y);
        self.current.show(Str(&win_ansi(text)));
        self.current.end_text();
    }

    /// `text` wrapped to the page, each line after the first indented by
    /// `indent` spaces (Courier) or not (Helvetica).
    fn para(&mut self, font: Font, size: f32, text: &str, indent: usize) {
        let width = font.chars_per_line(size);
        for (i, line) in wrap(text, width.saturating_sub(indent)).into_iter().enumerate() {
            if i == 0 {
                self.line(font, size, &line);
            } else {
                self.line(font, size, &format!("{}{line}", " ".repeat(indent)));
            }
        }
    }

    fn gap(&mut self, points: f32) {
        self.y -= points;
    }

    fn finish(mut self) -> Vec<Content> {
        self.new_page();
        self.pages
    }
}

fn utc(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]Z");
    at.format(&format).unwrap_or_else(|_| at.to_string())
}

fn shown(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("-")
}

/// A fixed-width cell: `value` cut (marked `~`) or padded to `width`.
fn cell(value: &str, width: usize) -> String {
    let chars: Vec<char> = value.chars().collect();
    if chars.len() > width {
        let mut cut: String = chars[..width.saturating_sub(2)].iter().collect();
        cut.push('~');
        format!("{cut:<width$}")
    } else {
        format!("{value:<width$}")
    }
}

fn event_lines(layout: &mut Layout, index: usize, event: &EvidenceEvent) {
    const SIZE: f32 = 7.5;
    let seq = event.seq.map_or("-".to_owned(), |s| s.to_string());
    let row = format!(
        "{}{}{}{}{}{}{}",
        cell(&(index + 1).to_string(), 4),
        cell(&seq, 5),
        cell(&utc(event.occurred_at), 22),
        cell(&event.kind, 24),
        cell(&event.source, 12),
        cell(shown(&event.program), 12),
        shown(&event.caller),
    );
    layout.para(Font::Mono, SIZE, &row, 9);
    let mut details = vec![format!("received {}; id {}", utc(event.received_at), event.event_id)];
    if event.signature_verified {
        details.push("provider signature verified".into());
    }
    if !event.categories.is_empty() {
        details.push(format!("categories: {}", event.categories.join(", ")));
    }
    if let Some(code) = &event.code {
        details.push(format!("code: {code}"));
    }
    layout.para(Font::Mono, SIZE, &format!("         {}", details.join("; ")), 9);
    if let Some(text) = &event.text {
        layout.para(Font::Mono, SIZE, &format!("         text: \"{text}\""), 9);
    }
    if let Some(evidence) = &event.evidence {
        layout.para(Font::Mono, SIZE, &format!("         evidence: \"{evidence}\""), 9);
    }
    if !event.unreadable.is_empty() {
        layout.para(Font::Mono, SIZE, &format!("         does not open: {}", event.unreadable.join(", ")), 9);
    }
    if let Some(reply) = &event.reply {
        let status = serde_json::to_value(reply.status).ok();
        let status = status.as_ref().and_then(|s| s.as_str()).unwrap_or("?");
        let mut line = format!("         reply via {}: {status}, {} attempt(s)", reply.provider, reply.attempts);
        if let Some(at) = reply.finished_at {
            line.push_str(&format!(", finished {}", utc(at)));
        }
        if let Some(id) = &reply.provider_message_id {
            line.push_str(&format!(", message id {id}"));
        }
        if let Some(error) = &reply.error {
            line.push_str(&format!(", {error}"));
        }
        layout.para(Font::Mono, SIZE, &line, 9);
        layout.para(Font::Mono, SIZE, &format!("         sent text: \"{}\"", reply.body), 9);
    }
    layout.gap(3.0);
}

/// The bundle as a PDF: a title page (organisation, programs, masked
/// number, time, verification, signature), the programs' wording, then the
/// events oldest first.
pub fn render_pdf(signed: &SignedBundle) -> Vec<u8> {
    use sha2::Digest;
    let bundle = &signed.bundle;
    let mut layout = Layout::new();
    layout.line(Font::Bold, 18.0, "Consent evidence bundle");
    layout.gap(8.0);
    let programs: Vec<String> = bundle.programs.iter().map(|p| format!("{} ({})", p.name, p.id)).collect();
    let verification = if bundle.verification.intact() {
        format!("intact ({} events verified)", bundle.verification.events_verified)
    } else {
        format!("broken ({} breaks)", bundle.verification.breaks.len())
    };
    let facts = [
        ("Organisation", bundle.organization.clone()),
        ("Programs", programs.join(", ")),
        ("Number", bundle.number.masked.clone()),
        ("Blind index", bundle.number.blind_index.clone()),
        ("Generated at", utc(bundle.generated_at)),
        ("Generated by", bundle.generated_by.clone()),
        ("Chain verification", verification),
        ("Events", bundle.events.len().to_string()),
        ("Signed by", format!("{} ({})", signed.signature.key_id, signed.signature.alg)),
        ("Bundle SHA-256", hex::encode(sha2::Sha256::digest(&signed.bytes))),
    ];
    for (label, value) in facts {
        layout.para(Font::Regular, 11.0, &format!("{label}: {value}"), 0);
    }
    for broken in &bundle.verification.breaks {
        layout.para(Font::Regular, 10.0, &format!("  - {broken}"), 0);
    }
    layout.gap(10.0);
    for note in [
        "The signed JSON bundle (the same request without Accept: application/pdf) is the authoritative copy; this \
         PDF is a readable rendering of it. Its signature (Ed25519, over the bundle bytes whose SHA-256 is shown \
         above) can be checked with the organisation's published key.",
        "Characters the PDF's standard fonts cannot show are written as <U+XXXX>.",
        bundle.wording_note.as_str(),
    ] {
        layout.para(Font::Regular, 9.0, note, 0);
        layout.gap(4.0);
    }
    layout.gap(8.0);
    layout.line(Font::Bold, 12.0, "Program wording (as configured at export)");
    for program in &bundle.programs {
        layout.gap(4.0);
        layout.para(
            Font::Bold,
            9.0,
            &format!(
                "{} ({}), {}; help: {}; {}",
                program.name, program.id, program.organization, program.help_contact, program.frequency
            ),
            0,
        );
        for wording in &program.replies {
            for (kind, text) in [("opt-out", &wording.opt_out), ("opt-in", &wording.opt_in), ("help", &wording.help)] {
                layout.para(Font::Regular, 8.0, &format!("[{}] {kind}: {text}", wording.language), 0);
            }
        }
    }
    layout.new_page();
    layout.line(Font::Bold, 12.0, "Events, oldest first (times UTC)");
    layout.gap(4.0);
    let header = format!(
        "{}{}{}{}{}{}{}",
        cell("#", 4),
        cell("Seq", 5),
        cell("Occurred", 22),
        cell("Kind", 24),
        cell("Source", 12),
        cell("Program", 12),
        "Caller"
    );
    layout.line(Font::Mono, 7.5, &header);
    layout.line(Font::Mono, 7.5, &"-".repeat(Font::Mono.chars_per_line(7.5)));
    for (index, event) in bundle.events.iter().enumerate() {
        event_lines(&mut layout, index, event);
    }
    write_pdf(layout.finish())
}

fn write_pdf(pages: Vec<Content>) -> Vec<u8> {
    let mut pdf = Pdf::new();
    let catalog = Ref::new(1);
    let tree = Ref::new(2);
    let fonts = [
        (Font::Regular, Ref::new(3), "Helvetica"),
        (Font::Bold, Ref::new(4), "Helvetica-Bold"),
        (Font::Mono, Ref::new(5), "Courier"),
    ];
    let first_page = 10;
    let page_ids: Vec<Ref> = (0..pages.len()).map(|i| Ref::new(first_page + 2 * i as i32)).collect();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree).kids(page_ids.iter().copied()).count(page_ids.len() as i32);
    for (font, id, base) in fonts {
        let _ = font;
        pdf.type1_font(id).base_font(Name(base.as_bytes())).encoding_predefined(Name(b"WinAnsiEncoding"));
    }
    let total = pages.len();
    for (i, (content, id)) in pages.into_iter().zip(page_ids.iter().copied()).enumerate() {
        let content_id = Ref::new(id.get() + 1);
        let mut content = content;
        // The page number, bottom right.
        content.begin_text();
        content.set_font(Font::Regular.name(), 8.0);
        content.next_line(PAGE_WIDTH - MARGIN - 60.0, MARGIN / 2.0);
        content.show(Str(format!("Page {} of {total}", i + 1).as_bytes()));
        content.end_text();
        let mut page = pdf.page(id);
        page.media_box(Rect::new(0.0, 0.0, PAGE_WIDTH, PAGE_HEIGHT));
        page.parent(tree);
        page.contents(content_id);
        let mut resources = page.resources();
        let mut font_map = resources.fonts();
        for (font, font_id, _) in fonts {
            font_map.pair(font.name(), font_id);
        }
        font_map.finish();
        resources.finish();
        page.finish();
        pdf.stream(content_id, &content.finish());
    }
    pdf.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn pdf_only_when_preferred() {
        assert!(wants_pdf(&accept("application/pdf")));
        assert!(wants_pdf(&accept("application/pdf, application/json;q=0.5")));
        assert!(!wants_pdf(&accept("application/json, application/pdf;q=0.5")));
        assert!(!wants_pdf(&accept("application/pdf;q=0")));
        assert!(!wants_pdf(&accept("*/*")));
        assert!(!wants_pdf(&HeaderMap::new()));
    }

    #[test]
    fn text_the_fonts_cannot_show_is_escaped_and_lines_wrap() {
        assert_eq!(win_ansi("Señal •"), b"Se\xf1al \x95".to_vec());
        assert_eq!(win_ansi("退订"), b"<U+9000><U+8BA2>".to_vec());
        let lines = wrap("one two three four five six", 10);
        assert!(lines.iter().all(|l| l.len() <= 10), "{lines:?}");
        assert_eq!(lines.join(" "), "one two three four five six");
        assert!(wrap(&"x".repeat(35), 10).iter().all(|l| l.len() <= 10));
    }
}
