//! The Guard check on the infrastructure must be able to fail: the real
//! template passes the HIPAA Security rules after the SAM transform, and a
//! deliberately bad template does not. Needs the tools ./scripts/test installs.

use std::process::Command;

fn guard(template: &str) -> (bool, String) {
    let out = Command::new("scripts/check-infra")
        .args(["guard", template])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("scripts/check-infra runs");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn the_template_passes_the_hipaa_security_rules() {
    let (passed, output) = guard("infra/template.yaml");
    assert!(passed, "{output}");
    assert!(output.contains("resources after the transform"), "the rules ran on the transformed template: {output}");
}

#[test]
fn a_deliberately_bad_template_fails_them() {
    let (passed, output) = guard("infra/testdata/bad-template.yaml");
    assert!(!passed, "Guard passed a bad template:\n{output}");
    for rule in [
        "IAM_NO_INLINE_POLICY_CHECK",
        "LAMBDA_CONCURRENCY_CHECK",
        "LAMBDA_DLQ_CHECK",
        "LAMBDA_INSIDE_VPC",
        "DYNAMODB_PITR_ENABLED",
        "SNS_ENCRYPTED_KMS",
    ] {
        assert!(output.contains(rule), "{rule} should fail:\n{output}");
    }
}

#[test]
fn a_circular_dependency_is_refused_before_any_rule_runs() {
    let (passed, output) = guard("infra/testdata/cyclic-template.yaml");
    assert!(!passed, "{output}");
    assert!(output.contains("circular dependency"), "{output}");
}

/// The template after the SAM transform, as CloudFormation will see it.
fn transformed() -> serde_json::Value {
    let out = tempfile::Builder::new().suffix(".json").tempfile().expect("a temporary file");
    let root = env!("CARGO_MANIFEST_DIR");
    let status = Command::new(format!("{root}/.tools/sam/bin/python"))
        .args(["scripts/sam_transform.py", "infra/template.yaml"])
        .arg(out.path())
        .current_dir(root)
        .status()
        .expect("the SAM transform runs (tools from ./scripts/test)");
    assert!(status.success());
    serde_json::from_str(&std::fs::read_to_string(out.path()).unwrap()).expect("JSON")
}

/// A statement's actions, whether it names one or a list.
fn actions(statement: &serde_json::Value) -> Vec<String> {
    match &statement["Action"] {
        serde_json::Value::String(a) => vec![a.clone()],
        serde_json::Value::Array(list) => list.iter().filter_map(|a| a.as_str()).map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

/// The statements of a role's managed policies (the template's roles have
/// no inline policy).
fn role_statements(template: &serde_json::Value, role: &str) -> Vec<serde_json::Value> {
    let resources = &template["Resources"];
    let properties = &resources[role]["Properties"];
    assert!(properties.get("Policies").is_none(), "{role}: no inline policy");
    let mut statements = Vec::new();
    for name in properties["ManagedPolicyArns"].as_array().unwrap().iter().filter_map(|p| p["Ref"].as_str()) {
        statements
            .extend(resources[name]["Properties"]["PolicyDocument"]["Statement"].as_array().unwrap().iter().cloned());
    }
    statements
}

fn of_type<'a>(template: &'a serde_json::Value, kind: &str) -> Vec<(&'a String, &'a serde_json::Value)> {
    template["Resources"].as_object().unwrap().iter().filter(|(_, r)| r["Type"] == kind).collect()
}

#[test]
fn the_outbox_function_takes_only_new_outbox_items_from_the_stream_and_gives_up_into_its_queue() {
    let template = transformed();
    let function = &template["Resources"]["OutboxFunction"];
    assert_eq!(function["Type"], "AWS::Lambda::Function");
    assert_eq!(function["Properties"]["Timeout"], 120);
    assert!(function["Properties"]["ReservedConcurrentExecutions"].as_u64().is_some_and(|n| n > 0));
    assert_eq!(function["Properties"]["Role"]["Fn::GetAtt"][0], "OutboxRole");
    let mappings: Vec<_> = of_type(&template, "AWS::Lambda::EventSourceMapping")
        .into_iter()
        .filter(|(_, m)| m["Properties"]["FunctionName"]["Ref"] == "OutboxFunction")
        .collect();
    assert_eq!(mappings.len(), 1, "one stream trigger");
    let mapping = &mappings[0].1["Properties"];
    assert_eq!(mapping["EventSourceArn"]["Fn::GetAtt"], serde_json::json!(["ConsentTable", "StreamArn"]));
    assert_eq!(mapping["StartingPosition"], "LATEST");
    assert_eq!(mapping["FunctionResponseTypes"], serde_json::json!(["ReportBatchItemFailures"]));
    assert_eq!(mapping["BisectBatchOnFunctionError"], true);
    assert_eq!(mapping["MaximumRetryAttempts"], 5);
    assert_eq!(mapping["MaximumRecordAgeInSeconds"], 3600);
    assert_eq!(
        mapping["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"],
        serde_json::json!(["OutboxDeadLetterQueue", "Arn"])
    );
    let filters = mapping["FilterCriteria"]["Filters"].as_array().unwrap();
    assert_eq!(filters.len(), 1);
    let pattern: serde_json::Value = serde_json::from_str(filters[0]["Pattern"].as_str().unwrap()).unwrap();
    assert_eq!(
        pattern,
        serde_json::json!({"eventName": ["INSERT"], "dynamodb": {"Keys": {"SK": {"S": [{"prefix": "OUTBOX#"}]}}}})
    );
    // The stream still carries keys only, and still feeds the STATE-deletion pipe.
    let table = &template["Resources"]["ConsentTable"]["Properties"];
    assert_eq!(table["StreamSpecification"]["StreamViewType"], "KEYS_ONLY");
    assert_eq!(template["Resources"]["StateDeletionPipe"]["Properties"]["Source"]["Fn::GetAtt"][0], "ConsentTable");
    // The queue is encrypted with the stack's key, keeps 14 days, and is alarmed.
    let queue = &template["Resources"]["OutboxDeadLetterQueue"]["Properties"];
    assert_eq!(queue["KmsMasterKeyId"]["Ref"], "DataKey");
    assert_eq!(queue["MessageRetentionPeriod"], 1_209_600);
    let alarmed = |metric: &str, dimension: &serde_json::Value| {
        of_type(&template, "AWS::CloudWatch::Alarm").iter().any(|(_, a)| {
            a["Properties"]["MetricName"] == metric && a["Properties"]["Dimensions"][0]["Value"] == *dimension
        })
    };
    assert!(alarmed(
        "ApproximateNumberOfMessagesVisible",
        &serde_json::json!({"Fn::GetAtt": ["OutboxDeadLetterQueue", "QueueName"]})
    ));
    assert!(alarmed("Errors", &serde_json::json!({"Ref": "OutboxFunction"})));
}

#[test]
fn the_outbox_role_may_not_delete_or_scan_and_sends_only_through_end_user_messaging() {
    let template = transformed();
    let statements = role_statements(&template, "OutboxRole");
    let actions: Vec<String> = statements.iter().flat_map(actions).collect();
    for forbidden in ["dynamodb:DeleteItem", "dynamodb:Scan", "dynamodb:BatchWriteItem", "dynamodb:*", "*"] {
        assert!(!actions.iter().any(|a| a == forbidden), "{forbidden} granted: {actions:?}");
    }
    for needed in [
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:Query",
        "dynamodb:ConditionCheckItem",
        "dynamodb:TransactWriteItems",
        "dynamodb:GetRecords",
        "dynamodb:GetShardIterator",
        "dynamodb:DescribeStream",
        "dynamodb:ListStreams",
        "sms-voice:SendTextMessage",
        "sqs:SendMessage",
        "ssm:GetParameter",
        "secretsmanager:GetSecretValue",
    ] {
        assert!(actions.iter().any(|a| a == needed), "{needed} missing: {actions:?}");
    }
    assert!(statements.iter().all(|s| s["Resource"] != "*"), "every statement names its resources");
    // Its data keys, as the webhook's: granted by the key policy, with the
    // encryption-context condition.
    let key = &template["Resources"]["DataKey"]["Properties"]["KeyPolicy"]["Statement"];
    let data_keys = key.as_array().unwrap().iter().find(|s| s["Sid"] == "FunctionsMakeAndOpenDataKeys").unwrap();
    assert!(data_keys["Principal"]["AWS"].as_array().unwrap().iter().any(|p| p["Fn::GetAtt"][0] == "OutboxRole"));
    assert_eq!(data_keys["Condition"]["StringEquals"]["kms:EncryptionContext:application"], "sms-consent");
}

#[test]
fn the_authorize_role_writes_only_usage_items_and_its_function_serves_the_release_route() {
    let template = transformed();
    let policy = &template["Resources"]["AuthorizePolicy"]["Properties"]["PolicyDocument"]["Statement"];
    let statements = policy.as_array().unwrap();
    let writes: Vec<&serde_json::Value> = statements
        .iter()
        .filter(|s| {
            actions(s).iter().any(|a| {
                a.starts_with("dynamodb:")
                    && !["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query"].contains(&a.as_str())
            })
        })
        .collect();
    assert_eq!(writes.len(), 1, "one write statement: {writes:?}");
    assert_eq!(writes[0]["Action"], serde_json::json!(["dynamodb:PutItem", "dynamodb:TransactWriteItems"]));
    let condition = &writes[0]["Condition"];
    assert_eq!(
        condition["ForAllValues:StringEquals"]["dynamodb:Attributes"],
        serde_json::json!(["PK", "SK", "data", "usage_version"]),
        "a usage item's attributes only: never a STATE's `version`"
    );
    assert_eq!(condition["ForAllValues:StringLike"]["dynamodb:LeadingKeys"], serde_json::json!(["PHONE#*"]));
    // SAM writes the HTTP API's routes into its OpenAPI body.
    let release = &template["Resources"]["HttpApi"]["Properties"]["Body"]["paths"]["/v1/reservations/release"]["post"];
    assert!(release.is_object(), "the release route is served");
    let integration = release["x-amazon-apigateway-integration"]["uri"].to_string();
    assert!(integration.contains("AuthorizeFunction"), "by the authorize function: {integration}");
    assert!(release["security"].to_string().contains("AWS_IAM"), "with IAM auth: {release}");
}

#[test]
fn the_consents_role_deletes_only_review_queue_keys_and_its_function_serves_the_review_routes() {
    let template = transformed();
    let policy = &template["Resources"]["ConsentsPolicy"]["Properties"]["PolicyDocument"]["Statement"];
    let deletes: Vec<&serde_json::Value> = policy
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["Action"].to_string().contains("Delete") || s["Action"] == "*" || s["Action"] == "dynamodb:*")
        .collect();
    assert_eq!(deletes.len(), 1, "one delete statement: {deletes:?}");
    assert_eq!(deletes[0]["Action"], "dynamodb:DeleteItem");
    assert_eq!(
        deletes[0]["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"],
        serde_json::json!(["REVIEW", "REVIEW#*"]),
        "never a number's items"
    );
    let batch: Vec<&serde_json::Value> =
        policy.as_array().unwrap().iter().filter(|s| s["Action"].to_string().contains("BatchWriteItem")).collect();
    assert_eq!(batch.len(), 1, "{batch:?}");
    assert_eq!(
        batch[0]["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"],
        serde_json::json!(["PHONE#*"]),
        "erasure's batches touch a number's items only, never the access report"
    );
    // Only the consents function may open the evidence signing key.
    let key = &template["Resources"]["DataKey"]["Properties"]["KeyPolicy"]["Statement"];
    let deny = key.as_array().unwrap().iter().find(|s| s["Sid"] == "OnlyTheConsentsFunctionOpensTheEvidenceSigningKey");
    let deny = deny.expect("a deny statement for the evidence signing key");
    assert_eq!(deny["Effect"], "Deny");
    assert_eq!(deny["Condition"]["StringEquals"]["kms:EncryptionContext:purpose"], "evidence-signing");
    let denied = deny["Principal"]["AWS"].to_string();
    for role in ["WebhookRole", "AuthorizeRole", "OutboxRole"] {
        assert!(denied.contains(role), "{role} may not open it: {denied}");
    }
    assert!(!denied.contains("ConsentsRole"));
    for path in ["/v1/reviews", "/v1/reviews/resolve"] {
        let route = &template["Resources"]["HttpApi"]["Properties"]["Body"]["paths"][path]["post"];
        let integration = route["x-amazon-apigateway-integration"]["uri"].to_string();
        assert!(integration.contains("ConsentsFunction"), "{path} by the consents function: {integration}");
        assert!(route["security"].to_string().contains("AWS_IAM"), "{path} with IAM auth: {route}");
    }
}

#[test]
fn the_alarms_read_the_metrics_the_functions_write_as_emf_lines() {
    use sms_consent::metrics::{emf_name, INTEGRITY_ALARMS, REPLIES, SIGNATURE_FAILURES};
    let template = transformed();
    let functions = of_type(&template, "AWS::Lambda::Function");
    assert!(functions.len() >= 4, "webhook, authorize, consents, outbox");
    let namespace = serde_json::json!({"Fn::Sub": "sms-consent/${Stage}"});
    for (name, function) in &functions {
        let variables = &function["Properties"]["Environment"]["Variables"];
        assert_eq!(variables[sms_consent::metrics::NAMESPACE_ENV], namespace, "{name}");
    }
    let alarm = |metric: &str| {
        let found: Vec<_> = of_type(&template, "AWS::CloudWatch::Alarm")
            .into_iter()
            .filter(|(_, a)| a["Properties"]["MetricName"] == metric)
            .collect();
        assert_eq!(found.len(), 1, "one alarm on {metric}");
        assert_eq!(found[0].1["Properties"]["Namespace"], namespace, "{metric}");
        found[0].1["Properties"].clone()
    };
    // Over every provider (the dimensionless set each EMF line also writes).
    assert!(alarm(&emf_name(SIGNATURE_FAILURES))["Dimensions"].is_null());
    assert!(alarm(&emf_name(INTEGRITY_ALARMS))["Dimensions"].is_null());
    assert_eq!(alarm(&emf_name(REPLIES))["Dimensions"], serde_json::json!([{"Name": "outcome", "Value": "failed"}]));
    // The log metric filters they replace are gone.
    assert!(of_type(&template, "AWS::Logs::MetricFilter")
        .iter()
        .all(|(_, f)| !f["Properties"]["FilterPattern"].as_str().unwrap_or("").contains("$.alarm")));
}

#[test]
fn the_preference_page_is_public_on_the_webhook_function_and_its_links_need_iam_on_the_consents_function() {
    let template = transformed();
    let paths = &template["Resources"]["HttpApi"]["Properties"]["Body"]["paths"];
    for method in ["get", "post"] {
        let page = &paths["/p/{token}"][method];
        assert!(page.is_object(), "{method} /p/{{token}} is served");
        let integration = page["x-amazon-apigateway-integration"]["uri"].to_string();
        assert!(integration.contains("WebhookFunction"), "by the webhook function: {integration}");
        assert!(!page["security"].to_string().contains("AWS_IAM"), "public, as the webhooks are: {page}");
    }
    // Its own throttle, below the API's default: page traffic cannot take
    // the webhook function's concurrency from STOP deliveries.
    let stage = of_type(&template, "AWS::ApiGatewayV2::Stage");
    let settings = &stage.first().expect("the API's stage").1["Properties"]["RouteSettings"];
    for route in ["GET /p/{token}", "POST /p/{token}"] {
        assert_eq!(
            settings[route]["ThrottlingRateLimit"],
            serde_json::json!({"Ref": "PreferencePageRateLimit"}),
            "{route}"
        );
        assert_eq!(
            settings[route]["ThrottlingBurstLimit"],
            serde_json::json!({"Ref": "PreferencePageBurstLimit"}),
            "{route}"
        );
    }
    let links = &paths["/v1/preference-links"]["post"];
    let integration = links["x-amazon-apigateway-integration"]["uri"].to_string();
    assert!(integration.contains("ConsentsFunction"), "by the consents function: {integration}");
    assert!(links["security"].to_string().contains("AWS_IAM"), "with IAM auth: {links}");
}

#[test]
fn only_the_functions_that_use_providers_may_read_or_name_the_provider_secret() {
    let template = transformed();
    let resources = &template["Resources"];
    for (function, role, reads) in [
        ("WebhookFunction", "WebhookRole", true),
        ("OutboxFunction", "OutboxRole", true),
        ("AuthorizeFunction", "AuthorizeRole", false),
        ("ConsentsFunction", "ConsentsRole", false),
    ] {
        let actions: Vec<String> = role_statements(&template, role).iter().flat_map(actions).collect();
        assert!(actions.iter().any(|a| a == "ssm:GetParameter"), "{role} reads its config: {actions:?}");
        let may_read = actions.iter().any(|a| a.starts_with("secretsmanager:"));
        assert_eq!(may_read, reads, "{role}: {actions:?}");
        let variables = &resources[function]["Properties"]["Environment"]["Variables"];
        assert_eq!(variables.get("SMS_CONSENT_SECRETS").is_some(), reads, "{function}: {variables}");
        assert!(variables.get("SMS_CONSENT_CONFIG_PARAMETER").is_some(), "{function}: {variables}");
    }
    // The key opens the secret (through Secrets Manager) for those two only.
    let statements = resources["DataKey"]["Properties"]["KeyPolicy"]["Statement"].as_array().unwrap();
    let through_secrets_manager: Vec<&serde_json::Value> =
        statements.iter().filter(|s| s["Condition"].to_string().contains("secretsmanager.")).collect();
    assert_eq!(through_secrets_manager.len(), 1, "{through_secrets_manager:?}");
    let principals = through_secrets_manager[0]["Principal"]["AWS"].to_string();
    for role in ["WebhookRole", "OutboxRole"] {
        assert!(principals.contains(role), "{role}: {principals}");
    }
    for role in ["AuthorizeRole", "ConsentsRole"] {
        assert!(!principals.contains(role), "{role}: {principals}");
    }
}
