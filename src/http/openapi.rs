//! The OpenAPI 3.1 document of the sender and staff API, generated from the
//! handlers and types; served at `GET /openapi.json` and kept in the repo as
//! `openapi.json` (a test keeps the two equal).

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{audit, authorize, consents, error, evidence, portal, reviews};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "sms-consent",
        description = "The consent ledger for healthcare SMS: authorization for senders, consent records, history and erasure for staff. Provider webhooks are documented in the README.",
        license(name = "Apache-2.0")
    ),
    paths(authorize::authorize, authorize::release, consents::record, consents::consent_state, consents::history, consents::erasure, evidence::export, reviews::list, reviews::resolve, audit::access_report, portal::make_link, super::healthz, super::metrics_text),
    components(schemas(error::Problem)),
    modifiers(&ApiKeyScheme),
    tags(
        (name = "authorization", description = "May program P send category C to number N now?"),
        (name = "consents", description = "Consent captured elsewhere, state, history, erasure, evidence bundles"),
        (name = "reviews", description = "Unclear messages awaiting a staff decision"),
        (name = "audit", description = "The access report: who read, recorded, erased or exported what"),
    )
)]
pub struct ApiDoc;

struct ApiKeyScheme;

impl Modify for ApiKeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key from [[api_keys]]"))
                    .build(),
            ),
        );
    }
}

/// The document, pretty-printed as it is kept in the repo.
pub fn document() -> String {
    ApiDoc::openapi().to_pretty_json().expect("the document serialises") + "\n"
}
