//! Reading templates: resolution, and every refusal naming the resource and property.

use super::*;
use crate::template::Template;

fn from_yaml(yaml: &str) -> Result<SamApp, DevError> {
    read(&Template::parse(yaml)?, &HashMap::new(), &Supplied::new())
}

fn with(
    yaml: &str,
    overrides: &[(&str, &str)],
    supplied: &[(&str, &str)],
) -> Result<SamApp, DevError> {
    let pairs = |l: &[(&str, &str)]| -> Vec<(String, String)> {
        l.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    read(
        &Template::parse(yaml)?,
        &pairs(overrides).into_iter().collect(),
        &pairs(supplied).into_iter().collect(),
    )
}

/// A minimal WebSocket API with one function `F` whose `Properties` get `fn_props`
/// (indented YAML) and further `resources`.
fn mini(fn_props: &str, resources: &str) -> String {
    format!(
        r#"
Parameters:
  Origins: {{Type: CommaDelimitedList, Default: "https://a.example, https://b.example"}}
  Empty: {{Type: String, Default: ""}}
Conditions:
  IsEmpty: !Equals [!Ref Empty, ""]
Resources:
  Api: {{Type: AWS::ApiGatewayV2::Api, Properties: {{ProtocolType: WEBSOCKET, RouteSelectionExpression: $request.body.action}}}}
  S: {{Type: AWS::ApiGatewayV2::Stage, Properties: {{StageName: x}}}}
  I: {{Type: AWS::ApiGatewayV2::Integration, Properties: {{IntegrationUri: !Sub "arn:aws:apigateway:r:lambda:path/functions/${{F.Arn}}/invocations"}}}}
  R: {{Type: AWS::ApiGatewayV2::Route, Properties: {{RouteKey: $default, Target: !Sub "integrations/${{I}}"}}}}
  F:
    Type: AWS::Serverless::Function
    Metadata: {{BuildProperties: {{Binary: f}}}}
    Properties:
{fn_props}
{resources}
"#
    )
}

fn env_of(var: &str) -> Result<BTreeMap<String, String>, DevError> {
    let yaml = mini(
        &format!("      Environment:\n        Variables:\n          V: {var}"),
        "",
    );
    from_yaml(&yaml).map(|a| a.functions["F"].env.clone())
}

fn message(e: DevError) -> String {
    match e {
        DevError::Template(m) => m,
        other => panic!("expected a template error, got {other}"),
    }
}

#[test]
fn select_split_and_the_stack_id_resolve_in_both_forms() {
    // GIVEN the stack id split and selected, with tags and with long Fn:: forms
    let short = env_of(r#"!Select [2, !Split ["/", !Ref "AWS::StackId"]]"#).unwrap();
    let long = env_of(r#"{"Fn::Select": ["1", {"Fn::Split": [",", "a,b,c"]}]}"#).unwrap();
    let joined = env_of(r#"!Join ["+", !Split [",", "a,b"]]"#).unwrap();
    // THEN they give the stack's uuid, the second item and the rejoined list
    assert_eq!(short["V"], "00000000-0000-4000-8000-000000000000");
    assert_eq!(long["V"], "b");
    assert_eq!(joined["V"], "a+b");
    // AND a list parameter can be selected from
    assert_eq!(
        env_of("!Select [1, !Ref Origins]").unwrap()["V"],
        "https://b.example"
    );
}

#[test]
fn a_bucket_ref_is_its_name_or_its_lowercase_logical_id() {
    // GIVEN one bucket with a BucketName and one without
    let yaml = mini(
            "      Environment:\n        Variables:\n          A: !Ref Named\n          B: !Ref Plain\n          C: !GetAtt Named.Arn",
            "  Named: {Type: AWS::S3::Bucket, Properties: {BucketName: !Sub \"media-${AWS::AccountId}\"}}\n  Plain: {Type: AWS::S3::Bucket}",
        );
    // WHEN the template is read
    let a = from_yaml(&yaml).unwrap();
    // THEN !Ref gives the name, or the lowercase id
    let env = &a.functions["F"].env;
    assert_eq!(env["A"], "media-000000000000");
    assert_eq!(env["B"], "plain");
    assert_eq!(env["C"], "arn:aws:s3:::media-000000000000");
    let names: Vec<&str> = a.buckets.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["media-000000000000", "plain"]);
}

#[test]
fn unresolvable_variables_are_errors_naming_function_and_variable() {
    // GIVEN variables the local stack cannot resolve
    for bad in [
        "!ImportValue other-stack-export",
        "!GetAZs us-east-1",
        r#"{"Fn::Base64": "x"}"#,
        r#"!Sub "a-${Nope}""#,
        "!Ref Nope",
        "!Ref AWS::NotificationARNs",
        "!GetAtt Api.ApiEndpoint",
        "!Select [5, !Split [',', 'a,b']]",
        "!If [NoSuchCondition, a, b]",
        "!Ref Origins",
    ] {
        // WHEN the template is read
        let e = message(env_of(bad).expect_err(bad));
        // THEN the error names the function and the variable
        assert!(e.contains("F") && e.contains("Variables.V"), "{bad}: {e}");
    }
}

#[test]
fn no_value_removes_a_variable_also_through_if() {
    // GIVEN a variable that is AWS::NoValue directly or through a condition
    // THEN it is not set, and no error is raised
    assert!(!env_of("!Ref AWS::NoValue").unwrap().contains_key("V"));
    assert!(!env_of("!If [IsEmpty, !Ref AWS::NoValue, x]")
        .unwrap()
        .contains_key("V"));
    assert_eq!(
        env_of("!If [IsEmpty, x, !Ref AWS::NoValue]").unwrap()["V"],
        "x"
    );
}

#[test]
fn no_value_in_a_function_removes_a_global_variable() {
    // GIVEN a global variable the function sets to AWS::NoValue
    let yaml = mini(
        "      Environment:\n        Variables:\n          G: !Ref AWS::NoValue",
        "Globals:\n  Function:\n    Environment:\n      Variables:\n        G: g\n        H: h",
    );
    // WHEN the template is read
    let env = from_yaml(&yaml).unwrap().functions["F"].env.clone();
    // THEN only the other global remains
    assert_eq!(env, BTreeMap::from([("H".to_string(), "h".to_string())]));
}

#[test]
fn unresolvable_route_keys_stages_and_bucket_names_are_errors() {
    // GIVEN a route key, a stage and a bucket name the local stack cannot resolve
    let route =
        mini("      Timeout: 3", "").replace("RouteKey: $default", "RouteKey: !ImportValue k");
    let stage = mini("      Timeout: 3", "").replace("StageName: x", "StageName: !Ref Nope");
    let bucket = mini(
        "      Timeout: 3",
        "  B: {Type: AWS::S3::Bucket, Properties: {BucketName: !GetAZs ''}}",
    );
    let timeout = mini("      Timeout: !Ref Empty", "");
    // THEN each is an error naming the resource and the key
    let e = message(from_yaml(&route).unwrap_err());
    assert!(e.contains("R.RouteKey"), "{e}");
    let e = message(from_yaml(&stage).unwrap_err());
    assert!(e.contains("S.StageName"), "{e}");
    let e = message(from_yaml(&bucket).unwrap_err());
    assert!(e.contains("B.BucketName"), "{e}");
    let e = message(from_yaml(&timeout).unwrap_err());
    assert!(e.contains("F.Timeout"), "{e}");
}

#[test]
fn s3_events_become_the_buckets_notifications() {
    // GIVEN a function subscribed to two event types of a bucket, with both filters
    let yaml = mini(
        r#"      Events:
        Up:
          Type: S3
          Properties:
            Bucket: !Ref B
            Events: [s3:ObjectCreated:Put, "s3:ObjectCreated:Copy"]
            Filter: {S3Key: {Rules: [{Name: prefix, Value: in/}, {Name: Suffix, Value: .jpg}]}}
        Other: {Type: SQS, Properties: {Queue: q}}"#,
        "  B: {Type: AWS::S3::Bucket}",
    );
    // WHEN the template is read
    let a = from_yaml(&yaml).unwrap();
    // THEN the bucket notifies the function on matching keys and events only
    let s = &a.buckets[0].notifications[0];
    assert_eq!(a.buckets[0].notifications.len(), 1);
    assert_eq!((s.function.as_str(), s.event_id.as_str()), ("F", "Up"));
    assert!(s.matches("ObjectCreated:Put", "in/a.jpg"));
    assert!(s.matches("ObjectCreated:Copy", "in/a.jpg"));
    assert!(!s.matches("ObjectCreated:Post", "in/a.jpg"));
    assert!(!s.matches("ObjectCreated:Put", "out/a.jpg"));
    assert!(!s.matches("ObjectCreated:Put", "in/a.png"));
}

#[test]
fn an_s3_event_on_a_bucket_outside_the_template_is_an_error() {
    // GIVEN an S3 event naming a bucket by a plain name
    let yaml = mini(
            "      Events:\n        Up: {Type: S3, Properties: {Bucket: some-bucket, Events: s3:ObjectCreated:*}}",
            "",
        );
    // THEN the template is refused, naming the event
    let e = message(from_yaml(&yaml).unwrap_err());
    assert!(e.contains("F.Events.Up.Bucket"), "{e}");
}

#[test]
fn a_route_to_an_unknown_integration_is_an_error() {
    let yaml = r#"
Resources:
  Api: {Type: AWS::ApiGatewayV2::Api, Properties: {ProtocolType: WEBSOCKET, RouteSelectionExpression: $request.body.action}}
  S: {Type: AWS::ApiGatewayV2::Stage, Properties: {StageName: x}}
  R: {Type: AWS::ApiGatewayV2::Route, Properties: {RouteKey: $default, Target: !Sub "integrations/${Nope}"}}
"#;
    assert!(from_yaml(yaml).is_err());
}

// ------------------------------------------------------------ refusals

#[test]
fn a_ref_to_a_type_the_stack_does_not_emulate_is_refused_naming_resource_and_property() {
    // GIVEN a variable that refers to a Secrets Manager secret and a log group
    for (var, kind) in [
        ("!Ref Sec", "AWS::SecretsManager::Secret"),
        ("!Sub \"x-${Logs}\"", "AWS::Logs::LogGroup"),
    ] {
        let yaml = mini(
            &format!("      Environment:\n        Variables:\n          V: {var}"),
            "  Sec: {Type: AWS::SecretsManager::Secret}\n  Logs: {Type: AWS::Logs::LogGroup}",
        );
        // WHEN the template is read
        let e = message(from_yaml(&yaml).unwrap_err());
        // THEN it is refused, naming the function, the variable and the resource's type
        assert!(
            e.contains("F.Environment.Variables.V") && e.contains(kind),
            "{e}"
        );
    }
}

#[test]
fn a_getatt_of_a_type_the_stack_does_not_emulate_is_refused_naming_resource_and_property() {
    // GIVEN an ARN of a role (not emulated), and one of a table (emulated)
    let yaml = mini(
            "      Environment:\n        Variables:\n          V: !GetAtt Role.Arn\n          T: !GetAtt Tab.Arn",
            "  Role: {Type: AWS::IAM::Role}\n  Tab: {Type: AWS::DynamoDB::Table, Properties: {TableName: named, AttributeDefinitions: [{AttributeName: k, AttributeType: S}], KeySchema: [{AttributeName: k, KeyType: HASH}]}}",
        );
    // THEN the role's is refused, naming variable, resource and attribute
    let e = message(from_yaml(&yaml).unwrap_err());
    assert!(
        e.contains("F.Environment.Variables.V")
            && e.contains("Role.Arn")
            && e.contains("AWS::IAM::Role"),
        "{e}"
    );
    // AND without it the table's resolves, by its TableName
    let yaml = yaml.replace("          V: !GetAtt Role.Arn\n", "");
    let env = from_yaml(&yaml).unwrap().functions["F"].env.clone();
    assert_eq!(
        env["T"],
        "arn:aws:dynamodb:us-east-1:000000000000:table/named"
    );
}

#[test]
fn an_integration_whose_function_cannot_be_read_is_refused_naming_it() {
    // GIVEN an integration whose URI names no function of the template
    let yaml = mini("      Timeout: 3", "").replace("${{F.Arn}}", "${{Gone.Arn}}");
    let yaml = yaml.replace("${F.Arn}", "${Gone.Arn}");
    // THEN it is refused at the integration, not later as a route error
    let e = message(from_yaml(&yaml).unwrap_err());
    assert!(e.contains("I.IntegrationUri"), "{e}");
}

#[test]
fn several_stages_for_one_api_are_refused_naming_them() {
    // GIVEN a second stage of the same API
    let yaml = mini(
        "      Timeout: 3",
        "  S2: {Type: AWS::ApiGatewayV2::Stage, Properties: {StageName: y}}",
    );
    // THEN the template is refused, naming the API and both stages
    let e = message(from_yaml(&yaml).unwrap_err());
    assert!(e.contains("Api") && e.contains("S, S2"), "{e}");
}

#[test]
fn parameter_overrides_must_name_a_parameter_and_keep_its_constraints() {
    let yaml = mini("      Timeout: !Ref Secs", "").replace(
            "Parameters:\n",
            "Parameters:\n  Secs: {Type: Number, Default: 3, MinValue: 1, MaxValue: 60}\n  Mode: {Type: String, Default: a, AllowedValues: [a, b]}\n",
        );
    // GIVEN overrides within the constraints THEN they are used
    let a = with(&yaml, &[("Secs", "30"), ("Mode", "b")], &[]).unwrap();
    assert_eq!(a.functions["F"].timeout, Duration::from_secs(30));
    // GIVEN an unknown name, or a value outside the constraints THEN each is refused, named
    for (name, value, says) in [
        ("Bogus", "1", "Bogus"),
        ("Secs", "61", "MaxValue"),
        ("Secs", "0", "MinValue"),
        ("Secs", "ten", "not a number"),
        ("Mode", "c", "not one of a, b"),
    ] {
        let e = message(with(&yaml, &[(name, value)], &[]).unwrap_err());
        assert!(e.contains(name) && e.contains(says), "{name}={value}: {e}");
    }
}

#[test]
fn a_variable_the_stack_supplies_is_not_resolved() {
    // GIVEN a variable that names a secret the stack does not emulate
    let yaml = mini(
            "      Environment:\n        Variables:\n          SECRET_ARN: !Ref Sec\n          OTHER: x",
            "  Sec: {Type: AWS::SecretsManager::Secret}",
        );
    assert!(from_yaml(&yaml).is_err(), "refused when nobody supplies it");
    // WHEN the stack supplies it
    let a = with(&yaml, &[], &[("SECRET_ARN", "supplied")]).unwrap();
    // THEN it takes the supplied value and the rest resolve as before
    assert_eq!(a.functions["F"].env["SECRET_ARN"], "supplied");
    assert_eq!(a.functions["F"].env["OTHER"], "x");
}

#[test]
fn tables_are_read_through_the_resolver() {
    // GIVEN a table named from a parameter with an index and TTL named the same way, and a
    // table whose Condition is false
    let yaml = mini(
            "      Timeout: 3",
            r#"  T:
    Type: AWS::DynamoDB::Table
    Properties:
      TableName: !Sub "${Empty}tbl"
      AttributeDefinitions: [{AttributeName: pk, AttributeType: S}, {AttributeName: g, AttributeType: S}]
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
      GlobalSecondaryIndexes:
        - IndexName: by_g
          KeySchema: [{AttributeName: g, KeyType: HASH}]
          Projection: {ProjectionType: INCLUDE, NonKeyAttributes: !Ref Origins}
      TimeToLiveSpecification: {AttributeName: !Sub "exp${Empty}", Enabled: true}
  Gone:
    Type: AWS::DynamoDB::Table
    Condition: NotEmpty
    Properties: {KeySchema: [{AttributeName: pk, KeyType: HASH}]}"#,
        )
        .replace("  IsEmpty: !Equals [!Ref Empty, \"\"]\n", "  IsEmpty: !Equals [!Ref Empty, \"\"]\n  NotEmpty: !Not [!Condition IsEmpty]\n");
    // WHEN the template is read
    let tables = from_yaml(&yaml).unwrap().tables;
    // THEN only the existing table is there, with everything resolved
    assert_eq!(tables.len(), 1, "{tables:?}");
    let t = &tables[0];
    assert_eq!((t.logical_id.as_str(), t.name.as_str()), ("T", "tbl"));
    assert_eq!(
        t.indexes[0].non_key_attributes,
        ["https://a.example", "https://b.example"]
    );
    assert_eq!(t.ttl_attribute.as_deref(), Some("exp"));
}

#[test]
fn a_table_without_keys_is_an_error() {
    let yaml = mini(
        "      Timeout: 3",
        "  T: {Type: AWS::DynamoDB::Table, Properties: {}}",
    );
    let e = message(from_yaml(&yaml).unwrap_err());
    assert!(
        e.contains("T.KeySchema") || e.contains("T.AttributeDefinitions"),
        "{e}"
    );
}
