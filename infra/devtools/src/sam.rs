//! What the local API Gateway needs from `template.yaml`: the WebSocket API (route selection
//! expression, stage, routes → integrations → functions) and each function (binary, timeout,
//! memory, environment with intrinsic functions resolved for a local stack).

use crate::DevError;
use serde_yaml::{Mapping, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

/// Values that stand in for AWS pseudo parameters locally.
pub const LOCAL_REGION: &str = "us-east-1";
pub const LOCAL_ACCOUNT: &str = "000000000000";
/// The API id the local gateway reports (`requestContext.apiId`, `!Ref <Api>`).
pub const LOCAL_API_ID: &str = "local";

#[derive(Debug, Clone, PartialEq)]
pub struct FunctionSpec {
    pub logical_id: String,
    /// `Metadata.BuildProperties.Binary`: the Cargo binary that is this function.
    pub binary: String,
    pub timeout: Duration,
    pub memory_mb: u32,
    /// Globals and the function's own variables, intrinsics resolved.
    pub env: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiSpec {
    pub logical_id: String,
    pub route_selection_expression: String,
    pub stage: String,
    /// Route key (`$connect`, `$default`, `sendmessage`, …) → function logical id.
    pub routes: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SamApp {
    pub api: ApiSpec,
    pub functions: BTreeMap<String, FunctionSpec>,
    /// Logical ids of `AWS::S3::Bucket` resources (local bucket names are their lowercase).
    pub buckets: Vec<String>,
}

fn err(msg: impl Into<String>) -> DevError {
    DevError::Template(msg.into())
}

/// Resolves CloudFormation intrinsics the way a local stack sees them: parameters take their
/// defaults (or overrides), resources their logical ids, pseudo parameters local values.
pub struct Resolver<'a> {
    params: HashMap<String, String>,
    resources: &'a Mapping,
    conditions: &'a Mapping,
}

impl<'a> Resolver<'a> {
    pub fn new(doc: &'a Value, overrides: &HashMap<String, String>) -> Result<Self, DevError> {
        static EMPTY: std::sync::OnceLock<Mapping> = std::sync::OnceLock::new();
        let empty = EMPTY.get_or_init(Mapping::new);
        let mut params = HashMap::new();
        if let Some(ps) = doc.get("Parameters").and_then(Value::as_mapping) {
            for (k, v) in ps {
                let k = k.as_str().ok_or_else(|| err("parameter name"))?;
                if let Some(d) = v.get("Default").and_then(scalar) {
                    params.insert(k.to_owned(), d);
                }
            }
        }
        params.extend(overrides.clone());
        Ok(Resolver {
            params,
            resources: doc
                .get("Resources")
                .and_then(Value::as_mapping)
                .unwrap_or(empty),
            conditions: doc
                .get("Conditions")
                .and_then(Value::as_mapping)
                .unwrap_or(empty),
        })
    }

    /// The string a value becomes, or `None` for `AWS::NoValue` and what cannot be resolved.
    pub fn resolve(&self, v: &Value) -> Option<String> {
        match v {
            Value::String(_) | Value::Number(_) | Value::Bool(_) => scalar(v),
            Value::Tagged(t) => self.intrinsic(t.tag.to_string().trim_start_matches('!'), &t.value),
            Value::Mapping(m) if m.len() == 1 => {
                let (k, inner) = m.iter().next()?;
                let name = k.as_str()?.trim_start_matches("Fn::");
                self.intrinsic(name, inner)
            }
            _ => None,
        }
    }

    fn intrinsic(&self, name: &str, v: &Value) -> Option<String> {
        match name {
            "Ref" => self.reference(v.as_str()?),
            "Sub" => match v {
                Value::String(s) => Some(self.sub(s, &HashMap::new())),
                Value::Sequence(seq) => {
                    let vars = seq
                        .get(1)?
                        .as_mapping()?
                        .iter()
                        .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), self.resolve(v)?)))
                        .collect();
                    Some(self.sub(seq.first()?.as_str()?, &vars))
                }
                _ => None,
            },
            "GetAtt" => {
                let (res, attr) = match v {
                    Value::String(s) => s.split_once('.')?,
                    Value::Sequence(s) => (s.first()?.as_str()?, s.get(1)?.as_str()?),
                    _ => return None,
                };
                Some(self.get_att(res, attr))
            }
            "If" => {
                let seq = v.as_sequence()?;
                let branch = if self.condition(seq.first()?.as_str()?) {
                    1
                } else {
                    2
                };
                self.resolve(seq.get(branch)?)
            }
            "Join" => {
                let seq = v.as_sequence()?;
                let sep = seq.first()?.as_str()?;
                let parts: Vec<String> = seq
                    .get(1)?
                    .as_sequence()?
                    .iter()
                    .filter_map(|p| self.resolve(p))
                    .collect();
                Some(parts.join(sep))
            }
            _ => None,
        }
    }

    fn reference(&self, name: &str) -> Option<String> {
        match name {
            "AWS::Region" => Some(LOCAL_REGION.into()),
            "AWS::AccountId" => Some(LOCAL_ACCOUNT.into()),
            "AWS::StackName" => Some("local".into()),
            "AWS::Partition" => Some("aws".into()),
            "AWS::URLSuffix" => Some("amazonaws.com".into()),
            "AWS::NoValue" => None,
            _ if self.params.contains_key(name) => self.params.get(name).cloned(),
            _ => {
                let res = self.resources.get(name)?;
                match res.get("Type").and_then(Value::as_str) {
                    Some("AWS::ApiGatewayV2::Api") => Some(LOCAL_API_ID.into()),
                    Some("AWS::S3::Bucket") => Some(name.to_lowercase()),
                    _ => Some(name.to_owned()),
                }
            }
        }
    }

    fn get_att(&self, res: &str, attr: &str) -> String {
        let kind = self
            .resources
            .get(res)
            .and_then(|r| r.get("Type"))
            .and_then(Value::as_str)
            .unwrap_or("");
        match (kind, attr) {
            ("AWS::DynamoDB::Table", "Arn") => {
                format!("arn:aws:dynamodb:{LOCAL_REGION}:{LOCAL_ACCOUNT}:table/{res}")
            }
            (_, "Arn") => format!("arn:aws:local:{LOCAL_REGION}:{LOCAL_ACCOUNT}:{res}"),
            _ => format!("{res}.{attr}"),
        }
    }

    fn sub(&self, s: &str, vars: &HashMap<String, String>) -> String {
        let mut out = String::new();
        let mut rest = s;
        while let Some(i) = rest.find("${") {
            out.push_str(&rest[..i]);
            let after = &rest[i + 2..];
            let Some(end) = after.find('}') else {
                out.push_str(&rest[i..]);
                return out;
            };
            let name = &after[..end];
            if let Some(lit) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(lit);
                out.push('}');
            } else if let Some(v) = vars.get(name) {
                out.push_str(v);
            } else if let Some((res, attr)) = name.split_once('.') {
                out.push_str(&self.get_att(res, attr));
            } else {
                out.push_str(&self.reference(name).unwrap_or_default());
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out
    }

    /// Evaluates a named condition (`Equals`, `Not`, `And`, `Or`, `Condition`).
    pub fn condition(&self, name: &str) -> bool {
        self.conditions
            .get(name)
            .map(|c| self.truth(c))
            .unwrap_or(false)
    }

    fn truth(&self, v: &Value) -> bool {
        let (name, inner) = match v {
            Value::Tagged(t) => (
                t.tag.to_string().trim_start_matches('!').to_owned(),
                &t.value,
            ),
            Value::Mapping(m) if m.len() == 1 => {
                let (k, inner) = m.iter().next().expect("one entry");
                (
                    k.as_str()
                        .unwrap_or("")
                        .trim_start_matches("Fn::")
                        .to_owned(),
                    inner,
                )
            }
            Value::Bool(b) => return *b,
            _ => return false,
        };
        let items = || inner.as_sequence().cloned().unwrap_or_default();
        match name.as_str() {
            "Equals" => {
                let it = items();
                it.len() == 2 && self.resolve(&it[0]) == self.resolve(&it[1])
            }
            "Not" => items().first().map(|c| !self.truth(c)).unwrap_or(false),
            "And" => items().iter().all(|c| self.truth(c)),
            "Or" => items().iter().any(|c| self.truth(c)),
            "Condition" => inner.as_str().map(|c| self.condition(c)).unwrap_or(false),
            _ => false,
        }
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The logical id a `!Sub "...${Name.Arn}..."` (suffix `.Arn`) or `"integrations/${Name}"`
/// (no suffix) string points at.
fn referenced_id(v: &Value, suffix: &str) -> Option<String> {
    let s = match v {
        Value::Tagged(t) => t.value.as_str()?.to_owned(),
        Value::String(s) => s.clone(),
        Value::Mapping(m) => m.get("Fn::Sub")?.as_str()?.to_owned(),
        _ => return None,
    };
    let mut names = Vec::new();
    let mut rest = s.as_str();
    while let Some(i) = rest.find("${") {
        let after = &rest[i + 2..];
        let end = after.find('}')?;
        names.push(&after[..end]);
        rest = &after[end + 1..];
    }
    names
        .into_iter()
        .find(|n| !n.starts_with("AWS::") && n.ends_with(suffix))
        .map(|n| n.strip_suffix(suffix).unwrap_or(n).to_owned())
}

/// Reads the WebSocket API and its functions from template text.
pub fn app_from_str(
    yaml: &str,
    param_overrides: &HashMap<String, String>,
) -> Result<SamApp, DevError> {
    let doc: Value = serde_yaml::from_str(yaml).map_err(|e| err(e.to_string()))?;
    let r = Resolver::new(&doc, param_overrides)?;
    let resources = doc
        .get("Resources")
        .and_then(Value::as_mapping)
        .ok_or_else(|| err("no Resources"))?;
    let of_type = |t: &'static str| {
        resources
            .iter()
            .filter(move |(_, v)| v.get("Type").and_then(Value::as_str) == Some(t))
            .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v)))
    };
    let props = |v: &'_ Value| v.get("Properties").cloned().unwrap_or(Value::Null);

    let apis: Vec<_> = of_type("AWS::ApiGatewayV2::Api")
        .filter(|(_, v)| {
            props(v)
                .get("ProtocolType")
                .and_then(|p| r.resolve(p))
                .as_deref()
                == Some("WEBSOCKET")
        })
        .collect();
    let [(api_id, api)] = apis.as_slice() else {
        return Err(err(format!(
            "expected one WEBSOCKET AWS::ApiGatewayV2::Api, found {}",
            apis.len()
        )));
    };
    let route_selection_expression = props(api)
        .get("RouteSelectionExpression")
        .and_then(|v| r.resolve(v))
        .ok_or_else(|| err("the API has no RouteSelectionExpression"))?;
    let stage = of_type("AWS::ApiGatewayV2::Stage")
        .find_map(|(_, v)| props(v).get("StageName").and_then(|s| r.resolve(s)))
        .ok_or_else(|| err("no AWS::ApiGatewayV2::Stage with a StageName"))?;

    let integrations: HashMap<String, String> = of_type("AWS::ApiGatewayV2::Integration")
        .filter_map(|(id, v)| Some((id, referenced_id(props(v).get("IntegrationUri")?, ".Arn")?)))
        .collect();
    let mut routes = BTreeMap::new();
    for (id, v) in of_type("AWS::ApiGatewayV2::Route") {
        let p = props(v);
        let key = p
            .get("RouteKey")
            .and_then(|k| r.resolve(k))
            .ok_or_else(|| err(format!("{id} has no RouteKey")))?;
        if p.get("AuthorizerId").is_some() {
            return Err(err(format!(
                "{id}: route authorizers are not emulated locally"
            )));
        }
        let integration = p
            .get("Target")
            .and_then(|t| referenced_id(t, ""))
            .ok_or_else(|| err(format!("{id} has no Target integrations/${{...}}")))?;
        let function = integrations.get(&integration).ok_or_else(|| {
            err(format!(
                "{id} targets {integration}, which invokes no function of this template"
            ))
        })?;
        routes.insert(key, function.clone());
    }

    let globals = doc
        .get("Globals")
        .and_then(|g| g.get("Function"))
        .cloned()
        .unwrap_or(Value::Null);
    let mut functions = BTreeMap::new();
    for (id, v) in of_type("AWS::Serverless::Function") {
        let p = props(v);
        let pick = |k: &str| {
            p.get(k)
                .or_else(|| globals.get(k))
                .and_then(|v| r.resolve(v))
        };
        let binary = v
            .get("Metadata")
            .and_then(|m| m.get("BuildProperties"))
            .and_then(|b| b.get("Binary"))
            .and_then(Value::as_str)
            .ok_or_else(|| err(format!("{id} has no Metadata.BuildProperties.Binary")))?;
        let mut env = BTreeMap::new();
        for source in [&globals, &p] {
            if let Some(vars) = source
                .get("Environment")
                .and_then(|e| e.get("Variables"))
                .and_then(Value::as_mapping)
            {
                for (k, v) in vars {
                    if let (Some(k), Some(v)) = (k.as_str(), r.resolve(v)) {
                        env.insert(k.to_owned(), v);
                    }
                }
            }
        }
        functions.insert(
            id.clone(),
            FunctionSpec {
                logical_id: id.clone(),
                binary: binary.to_owned(),
                timeout: Duration::from_secs(
                    pick("Timeout").and_then(|t| t.parse().ok()).unwrap_or(3),
                ),
                memory_mb: pick("MemorySize")
                    .and_then(|m| m.parse().ok())
                    .unwrap_or(128),
                env,
            },
        );
    }
    for (key, f) in &routes {
        if !functions.contains_key(f) {
            return Err(err(format!(
                "route {key} invokes {f}, which is not an AWS::Serverless::Function"
            )));
        }
    }
    let buckets = of_type("AWS::S3::Bucket").map(|(id, _)| id).collect();
    Ok(SamApp {
        api: ApiSpec {
            logical_id: api_id.clone(),
            route_selection_expression,
            stage,
            routes,
        },
        functions,
        buckets,
    })
}

pub fn app_from_file(
    path: &Path,
    param_overrides: &HashMap<String, String>,
) -> Result<SamApp, DevError> {
    app_from_str(&std::fs::read_to_string(path)?, param_overrides)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> SamApp {
        app_from_file(&crate::repo_root().join("template.yaml"), &HashMap::new()).unwrap()
    }

    #[test]
    fn the_templates_routes_stage_and_selection_expression_are_read() {
        let a = app();
        assert_eq!(a.api.route_selection_expression, "$request.body.action");
        assert_eq!(a.api.stage, "prod");
        assert_eq!(a.api.routes["$connect"], "ConnectFunction");
        assert_eq!(a.api.routes["$default"], "DefaultFunction");
        assert_eq!(a.api.routes["$disconnect"], "DisconnectFunction");
    }

    #[test]
    fn functions_get_binary_limits_and_resolved_environment() {
        let a = app();
        let d = &a.functions["DefaultFunction"];
        assert_eq!(d.binary, "chat-default");
        assert_eq!(
            d.timeout,
            Duration::from_secs(20),
            "own Timeout overrides Globals"
        );
        assert_eq!(d.memory_mb, 256);
        assert_eq!(d.env["MESSAGES_TABLE"], "MessagesTable");
        assert_eq!(d.env["PAGE_SIZE_DEFAULT"], "20");
        assert_eq!(
            d.env["MANAGEMENT_ENDPOINT"],
            "https://local.execute-api.us-east-1.amazonaws.com/prod"
        );
        let c = &a.functions["ConnectFunction"];
        // CreateJwtSecret holds (JwtSecretArn defaults to ""), so the created secret is used
        assert_eq!(c.env["JWT_SECRET_ARN"], "JwtSecret");
        assert!(!a.functions["DisconnectFunction"]
            .env
            .contains_key("JWT_SECRET_ARN"));
    }

    #[test]
    fn parameter_overrides_flow_into_conditions_and_values() {
        let overrides = HashMap::from([
            ("StageName".to_string(), "dev".to_string()),
            ("JwtSecretArn".to_string(), "arn:x".to_string()),
        ]);
        let a = app_from_file(&crate::repo_root().join("template.yaml"), &overrides).unwrap();
        assert_eq!(a.api.stage, "dev");
        assert_eq!(
            a.functions["ConnectFunction"].env["JWT_SECRET_ARN"],
            "arn:x"
        );
    }

    #[test]
    fn sub_handles_literals_and_variables() {
        let doc: Value =
            serde_yaml::from_str("Parameters: {P: {Default: v}}\nResources: {}").unwrap();
        let r = Resolver::new(&doc, &HashMap::new()).unwrap();
        assert_eq!(
            r.sub("a-${P}-${!Lit}-${AWS::Region}", &HashMap::new()),
            "a-v-${Lit}-us-east-1"
        );
    }

    #[test]
    fn a_route_to_an_unknown_integration_is_an_error() {
        let yaml = r#"
Resources:
  Api: {Type: AWS::ApiGatewayV2::Api, Properties: {ProtocolType: WEBSOCKET, RouteSelectionExpression: $request.body.action}}
  S: {Type: AWS::ApiGatewayV2::Stage, Properties: {StageName: x}}
  R: {Type: AWS::ApiGatewayV2::Route, Properties: {RouteKey: $default, Target: !Sub "integrations/${Nope}"}}
"#;
        assert!(app_from_str(yaml, &HashMap::new()).is_err());
    }
}
