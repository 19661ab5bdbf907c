//! What the local stack needs from `template.yaml`: the WebSocket API (route selection
//! expression, stage, routes → integrations → functions), each function (binary, timeout,
//! memory, environment with intrinsic functions resolved for a local stack) and each bucket
//! (resolved name, CORS rules, the functions its S3 events go to).
//!
//! Every value the local stack uses must resolve: an intrinsic, pseudo parameter or name it
//! cannot resolve is a [`DevError::Template`] naming the resource and the key, never a value
//! silently dropped or left empty. `AWS::NoValue` (also chosen by an `!If`) removes a value,
//! as CloudFormation does.

use crate::template::Template;
use crate::DevError;
use serde_yaml::{Mapping, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

/// Values that stand in for AWS pseudo parameters locally.
pub const LOCAL_REGION: &str = "us-east-1";
pub const LOCAL_ACCOUNT: &str = "000000000000";
pub const LOCAL_STACK_NAME: &str = "local";
/// `AWS::StackId` locally; its last part is what `!Select [2, !Split ["/", ...]]` picks.
pub const LOCAL_STACK_ID: &str =
    "arn:aws:cloudformation:us-east-1:000000000000:stack/local/00000000-0000-4000-8000-000000000000";
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

/// One rule of a bucket's `CorsConfiguration.CorsRules`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CorsRule {
    pub allowed_methods: Vec<String>,
    /// Each may hold one `*` wildcard (`*`, `https://*.example.com`).
    pub allowed_origins: Vec<String>,
    /// Each may hold one `*` wildcard; compared case-insensitively.
    pub allowed_headers: Vec<String>,
    pub exposed_headers: Vec<String>,
    pub max_age_seconds: Option<u32>,
}

/// A function that a bucket notifies: one `Events` entry of `Type: S3` of an
/// `AWS::Serverless::Function`.
#[derive(Debug, Clone, PartialEq)]
pub struct S3Subscription {
    /// Logical id of the function.
    pub function: String,
    /// The entry's name under `Events` (`ImageUploaded`); locally the `configurationId`.
    pub event_id: String,
    /// Patterns such as `s3:ObjectCreated:*` or `s3:ObjectCreated:Put`.
    pub events: Vec<String>,
    /// `Filter.S3Key.Rules`: the key must start with `prefix` and end with `suffix`.
    pub prefix: Option<String>,
    pub suffix: Option<String>,
}

impl S3Subscription {
    /// Whether an event named like `ObjectCreated:Put` for `key` (not URL-encoded) goes to
    /// this function.
    pub fn matches(&self, event_name: &str, key: &str) -> bool {
        let event = format!("s3:{event_name}");
        let named = self.events.iter().any(|p| match p.strip_suffix('*') {
            Some(head) => event.starts_with(head),
            None => *p == event,
        });
        named
            && self.prefix.as_deref().is_none_or(|p| key.starts_with(p))
            && self.suffix.as_deref().is_none_or(|s| key.ends_with(s))
    }
}

/// One `AWS::S3::Bucket`.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketSpec {
    /// The bucket's name: its `BucketName` resolved, else its logical id in lowercase.
    pub name: String,
    pub logical_id: String,
    pub cors: Vec<CorsRule>,
    pub notifications: Vec<S3Subscription>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SamApp {
    pub api: ApiSpec,
    pub functions: BTreeMap<String, FunctionSpec>,
    pub buckets: Vec<BucketSpec>,
}

impl SamApp {
    /// The bucket named `name` (its resolved name).
    pub fn bucket(&self, name: &str) -> Option<&BucketSpec> {
        self.buckets.iter().find(|b| b.name == name)
    }
}

fn err(msg: impl Into<String>) -> DevError {
    DevError::Template(msg.into())
}

/// A resolved value: CloudFormation values are strings or lists of strings.
#[derive(Debug, Clone, PartialEq)]
enum Val {
    Str(String),
    List(Vec<String>),
}

/// A resolution failure, without the resource and key (callers add them).
type Res<T> = Result<T, String>;

/// Deep enough for any real template, shallow enough to stop a `BucketName` that refers to
/// its own bucket.
const MAX_DEPTH: u8 = 32;

/// Resolves CloudFormation intrinsics the way a local stack sees them: parameters take their
/// defaults (or overrides), resources their logical ids (buckets their names), pseudo
/// parameters local values.
pub struct Resolver<'a> {
    params: HashMap<String, Val>,
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
                let value = match overrides.get(k) {
                    Some(o) => o.clone(),
                    None => match v.get("Default") {
                        Some(d) => scalar(d).ok_or_else(|| {
                            err(format!("parameter {k}: Default is not a plain value"))
                        })?,
                        // No default and no override: an error only where it is used.
                        None => continue,
                    },
                };
                let kind = v.get("Type").and_then(Value::as_str).unwrap_or("String");
                let is_list = kind == "CommaDelimitedList" || kind.starts_with("List<");
                params.insert(
                    k.to_owned(),
                    if is_list {
                        Val::List(value.split(',').map(|s| s.trim().to_owned()).collect())
                    } else {
                        Val::Str(value)
                    },
                );
            }
        }
        for (k, v) in overrides {
            params
                .entry(k.clone())
                .or_insert_with(|| Val::Str(v.clone()));
        }
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

    /// The string `v` becomes, or `None` for `AWS::NoValue`. `what` (`Resource.Key`) names
    /// the value in the error.
    pub fn resolve(&self, v: &Value, what: &str) -> Result<Option<String>, DevError> {
        match self.eval(v, 0) {
            Ok(None) => Ok(None),
            Ok(Some(Val::Str(s))) => Ok(Some(s)),
            Ok(Some(Val::List(_))) => Err(err(format!("{what}: a list where a value is expected"))),
            Err(e) => Err(err(format!("{what}: {e}"))),
        }
    }

    /// Like [`Resolver::resolve`], but `AWS::NoValue` is an error too.
    pub fn require(&self, v: &Value, what: &str) -> Result<String, DevError> {
        self.resolve(v, what)?
            .ok_or_else(|| err(format!("{what}: AWS::NoValue where a value is required")))
    }

    /// A list: a YAML sequence, a `CommaDelimitedList` parameter, an `!Split`, …
    /// (`AWS::NoValue` items are dropped, a lone value is a list of one).
    pub fn resolve_list(&self, v: &Value, what: &str) -> Result<Vec<String>, DevError> {
        match self.eval(v, 0) {
            Ok(None) => Ok(Vec::new()),
            Ok(Some(Val::Str(s))) => Ok(vec![s]),
            Ok(Some(Val::List(l))) => Ok(l),
            Err(e) => Err(err(format!("{what}: {e}"))),
        }
    }

    /// Evaluates a named condition (`Equals`, `Not`, `And`, `Or`, `Condition`).
    pub fn condition(&self, name: &str) -> Result<bool, DevError> {
        self.named_condition(name, 0)
            .map_err(|e| err(format!("condition {name}: {e}")))
    }

    fn named_condition(&self, name: &str, depth: u8) -> Res<bool> {
        let c = self
            .conditions
            .get(name)
            .ok_or_else(|| format!("no condition {name} in Conditions"))?;
        self.truth(c, depth + 1)
    }

    fn eval(&self, v: &Value, depth: u8) -> Res<Option<Val>> {
        if depth > MAX_DEPTH {
            return Err("intrinsics nested too deeply (a cycle?)".into());
        }
        match v {
            Value::String(_) | Value::Number(_) | Value::Bool(_) => Ok(scalar(v).map(Val::Str)),
            Value::Null => Err("empty value".into()),
            Value::Sequence(items) => {
                let mut out = Vec::new();
                for item in items {
                    match self.eval(item, depth + 1)? {
                        None => {}
                        Some(Val::Str(s)) => out.push(s),
                        Some(Val::List(_)) => return Err("a list inside a list".into()),
                    }
                }
                Ok(Some(Val::List(out)))
            }
            Value::Tagged(t) => {
                self.intrinsic(t.tag.to_string().trim_start_matches('!'), &t.value, depth)
            }
            Value::Mapping(m) => match m.iter().next() {
                Some((Value::String(k), inner))
                    if m.len() == 1 && (k == "Ref" || k.starts_with("Fn::")) =>
                {
                    self.intrinsic(k.trim_start_matches("Fn::"), inner, depth)
                }
                _ => Err("a mapping where a value is expected".into()),
            },
        }
    }

    /// A value that must be a string (not a list, not `AWS::NoValue`).
    fn eval_str(&self, v: &Value, depth: u8) -> Res<String> {
        match self.eval(v, depth)? {
            Some(Val::Str(s)) => Ok(s),
            Some(Val::List(_)) => Err("a list where a value is expected".into()),
            None => Err("AWS::NoValue where a value is required".into()),
        }
    }

    fn intrinsic(&self, name: &str, v: &Value, depth: u8) -> Res<Option<Val>> {
        let depth = depth + 1;
        let args = |n: usize| -> Res<&Vec<Value>> {
            v.as_sequence()
                .filter(|s| s.len() == n)
                .ok_or_else(|| format!("Fn::{name} takes a list of {n}"))
        };
        match name {
            "Ref" => {
                let target = v.as_str().ok_or("Ref takes a name")?;
                self.reference(target, depth)
            }
            "Sub" => {
                let (text, vars) = match v {
                    Value::String(s) => (s.as_str(), HashMap::new()),
                    Value::Sequence(seq) if seq.len() == 2 => {
                        let text = seq[0].as_str().ok_or("Fn::Sub: the text is not a string")?;
                        let map = seq[1]
                            .as_mapping()
                            .ok_or("Fn::Sub: the variables are not a mapping")?;
                        let mut vars = HashMap::new();
                        for (k, v) in map {
                            let k = k.as_str().ok_or("Fn::Sub: a variable name")?;
                            let value = self
                                .eval_str(v, depth)
                                .map_err(|e| format!("Fn::Sub variable {k}: {e}"))?;
                            vars.insert(k.to_owned(), value);
                        }
                        (text, vars)
                    }
                    _ => return Err("Fn::Sub takes a string or [string, variables]".into()),
                };
                self.sub(text, &vars, depth).map(|s| Some(Val::Str(s)))
            }
            "GetAtt" => {
                let (res, attr) = match v {
                    Value::String(s) => s
                        .split_once('.')
                        .ok_or_else(|| format!("Fn::GetAtt {s}: expected Resource.Attribute"))?,
                    Value::Sequence(s) if s.len() == 2 => (
                        s[0].as_str().ok_or("Fn::GetAtt: resource name")?,
                        s[1].as_str().ok_or("Fn::GetAtt: attribute name")?,
                    ),
                    _ => return Err("Fn::GetAtt takes Resource.Attribute".into()),
                };
                self.get_att(res, attr, depth).map(|s| Some(Val::Str(s)))
            }
            "If" => {
                let a = args(3)?;
                let cond = a[0].as_str().ok_or("Fn::If: the condition is not a name")?;
                let branch = if self.named_condition(cond, depth)? {
                    1
                } else {
                    2
                };
                self.eval(&a[branch], depth)
            }
            "Join" => {
                let a = args(2)?;
                let sep = a[0]
                    .as_str()
                    .ok_or("Fn::Join: the separator is not a string")?;
                match self.eval(&a[1], depth)? {
                    Some(Val::List(parts)) => Ok(Some(Val::Str(parts.join(sep)))),
                    _ => Err("Fn::Join: the second argument is not a list".into()),
                }
            }
            "Select" => {
                let a = args(2)?;
                let index: usize = self
                    .eval_str(&a[0], depth)?
                    .parse()
                    .map_err(|_| "Fn::Select: the index is not a whole number".to_owned())?;
                match self.eval(&a[1], depth)? {
                    Some(Val::List(items)) => {
                        let n = items.len();
                        items
                            .into_iter()
                            .nth(index)
                            .map(|s| Some(Val::Str(s)))
                            .ok_or_else(|| format!("Fn::Select: index {index} of a list of {n}"))
                    }
                    _ => Err("Fn::Select: the second argument is not a list".into()),
                }
            }
            "Split" => {
                let a = args(2)?;
                let delim = a[0]
                    .as_str()
                    .ok_or("Fn::Split: the delimiter is not a string")?;
                if delim.is_empty() {
                    return Err("Fn::Split: empty delimiter".into());
                }
                let source = self.eval_str(&a[1], depth)?;
                Ok(Some(Val::List(
                    source.split(delim).map(str::to_owned).collect(),
                )))
            }
            _ => Err(format!("Fn::{name} is not supported by the local stack")),
        }
    }

    fn reference(&self, name: &str, depth: u8) -> Res<Option<Val>> {
        let s = |v: &str| Ok(Some(Val::Str(v.to_owned())));
        match name {
            "AWS::Region" => s(LOCAL_REGION),
            "AWS::AccountId" => s(LOCAL_ACCOUNT),
            "AWS::StackName" => s(LOCAL_STACK_NAME),
            "AWS::StackId" => s(LOCAL_STACK_ID),
            "AWS::Partition" => s("aws"),
            "AWS::URLSuffix" => s("amazonaws.com"),
            "AWS::NoValue" => Ok(None),
            _ if name.starts_with("AWS::") => {
                Err(format!("pseudo parameter {name} is not supported locally"))
            }
            _ => {
                if let Some(p) = self.params.get(name) {
                    return Ok(Some(p.clone()));
                }
                let res = self
                    .resources
                    .get(name)
                    .ok_or_else(|| format!("no parameter or resource named {name}"))?;
                match res.get("Type").and_then(Value::as_str) {
                    Some("AWS::ApiGatewayV2::Api") => s(LOCAL_API_ID),
                    Some("AWS::S3::Bucket") => {
                        self.bucket_name(name, depth).map(|n| Some(Val::Str(n)))
                    }
                    _ => s(name),
                }
            }
        }
    }

    /// A bucket's `BucketName` resolved, or its logical id in lowercase without one.
    fn bucket_name(&self, id: &str, depth: u8) -> Res<String> {
        let named = self
            .resources
            .get(id)
            .and_then(|r| r.get("Properties"))
            .and_then(|p| p.get("BucketName"));
        match named {
            None => Ok(id.to_lowercase()),
            Some(v) => match self.eval(v, depth + 1) {
                Ok(None) => Ok(id.to_lowercase()),
                Ok(Some(Val::Str(n))) => Ok(n),
                Ok(Some(Val::List(_))) => Err(format!("{id}.BucketName is a list")),
                Err(e) => Err(format!("{id}.BucketName: {e}")),
            },
        }
    }

    fn get_att(&self, res: &str, attr: &str, depth: u8) -> Res<String> {
        let kind = self
            .resources
            .get(res)
            .ok_or_else(|| format!("!GetAtt {res}.{attr}: no resource {res}"))?
            .get("Type")
            .and_then(Value::as_str)
            .unwrap_or("");
        match (kind, attr) {
            ("AWS::DynamoDB::Table", "Arn") => Ok(format!(
                "arn:aws:dynamodb:{LOCAL_REGION}:{LOCAL_ACCOUNT}:table/{res}"
            )),
            ("AWS::S3::Bucket", "Arn") => {
                Ok(format!("arn:aws:s3:::{}", self.bucket_name(res, depth)?))
            }
            ("AWS::S3::Bucket", "DomainName") => Ok(format!(
                "{}.s3.amazonaws.com",
                self.bucket_name(res, depth)?
            )),
            ("AWS::S3::Bucket", "RegionalDomainName") => Ok(format!(
                "{}.s3.{LOCAL_REGION}.amazonaws.com",
                self.bucket_name(res, depth)?
            )),
            ("AWS::Serverless::Function" | "AWS::Lambda::Function", "Arn") => Ok(format!(
                "arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT}:function:{res}"
            )),
            (_, "Arn") => Ok(format!(
                "arn:aws:local:{LOCAL_REGION}:{LOCAL_ACCOUNT}:{res}"
            )),
            _ => Err(format!(
                "!GetAtt {res}.{attr}: the attribute is not emulated locally"
            )),
        }
    }

    fn sub(&self, s: &str, vars: &HashMap<String, String>, depth: u8) -> Res<String> {
        let mut out = String::new();
        let mut rest = s;
        while let Some(i) = rest.find("${") {
            out.push_str(&rest[..i]);
            let after = &rest[i + 2..];
            let Some(end) = after.find('}') else {
                out.push_str(&rest[i..]);
                return Ok(out);
            };
            let name = &after[..end];
            if let Some(lit) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(lit);
                out.push('}');
            } else if let Some(v) = vars.get(name) {
                out.push_str(v);
            } else if let (false, Some((res, attr))) =
                (name.starts_with("AWS::"), name.split_once('.'))
            {
                out.push_str(&self.get_att(res, attr, depth)?);
            } else {
                let value = self
                    .reference(name, depth)
                    .map_err(|e| format!("Fn::Sub ${{{name}}}: {e}"))?;
                match value {
                    Some(Val::Str(v)) => out.push_str(&v),
                    Some(Val::List(_)) => {
                        return Err(format!("Fn::Sub: ${{{name}}} is a list"));
                    }
                    None => return Err(format!("Fn::Sub: ${{{name}}} is AWS::NoValue")),
                }
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn truth(&self, v: &Value, depth: u8) -> Res<bool> {
        if depth > MAX_DEPTH {
            return Err("conditions nested too deeply (a cycle?)".into());
        }
        let (name, inner) = match v {
            Value::Tagged(t) => (
                t.tag.to_string().trim_start_matches('!').to_owned(),
                &t.value,
            ),
            Value::Mapping(m) if m.len() == 1 => {
                let (k, inner) = m.iter().next().expect("one entry");
                let k = k.as_str().ok_or("a condition's function is not a name")?;
                (k.trim_start_matches("Fn::").to_owned(), inner)
            }
            Value::Bool(b) => return Ok(*b),
            _ => return Err("not a condition".into()),
        };
        let items = || {
            inner
                .as_sequence()
                .ok_or_else(|| format!("Fn::{name} takes a list"))
        };
        match name.as_str() {
            "Equals" => match items()?.as_slice() {
                [a, b] => Ok(self.eval(a, depth + 1)? == self.eval(b, depth + 1)?),
                _ => Err("Fn::Equals takes two values".into()),
            },
            "Not" => match items()?.as_slice() {
                [c] => Ok(!self.truth(c, depth + 1)?),
                _ => Err("Fn::Not takes one condition".into()),
            },
            "And" => {
                let mut all = true;
                for c in items()? {
                    all &= self.truth(c, depth + 1)?;
                }
                Ok(all)
            }
            "Or" => {
                let mut any = false;
                for c in items()? {
                    any |= self.truth(c, depth + 1)?;
                }
                Ok(any)
            }
            "Condition" => {
                let c = inner.as_str().ok_or("Condition takes a name")?;
                self.named_condition(c, depth + 1)
            }
            _ => Err(format!("Fn::{name} is not a condition function")),
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

/// The logical id in `!Ref Name` / `{Ref: Name}`.
fn ref_target(v: &Value) -> Option<&str> {
    match v {
        Value::Tagged(t) if t.tag == "Ref" => t.value.as_str(),
        Value::Mapping(m) if m.len() == 1 => m.get("Ref")?.as_str(),
        _ => None,
    }
}

/// Reads the WebSocket API, its functions and the buckets from a parsed template.
pub fn app(
    template: &Template,
    param_overrides: &HashMap<String, String>,
) -> Result<SamApp, DevError> {
    let doc = template.doc();
    let r = Resolver::new(doc, param_overrides)?;
    let resources = doc
        .get("Resources")
        .and_then(Value::as_mapping)
        .ok_or_else(|| err("no Resources"))?;
    // Resources whose `Condition` is false do not exist.
    let mut absent = HashSet::new();
    for (k, v) in resources {
        if let (Some(id), Some(c)) = (k.as_str(), v.get("Condition")) {
            let c = c
                .as_str()
                .ok_or_else(|| err(format!("{id}.Condition is not a name")))?;
            if !r
                .condition(c)
                .map_err(|e| err(format!("{id}.Condition: {e}")))?
            {
                absent.insert(id.to_owned());
            }
        }
    }
    let of_type = |t: &'static str| {
        let absent = &absent;
        resources
            .iter()
            .filter(move |(_, v)| v.get("Type").and_then(Value::as_str) == Some(t))
            .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v)))
            .filter(move |(k, _)| !absent.contains(k))
    };
    let props = |v: &'_ Value| v.get("Properties").cloned().unwrap_or(Value::Null);

    let mut apis = Vec::new();
    for (id, v) in of_type("AWS::ApiGatewayV2::Api") {
        let protocol = match props(v).get("ProtocolType") {
            Some(p) => r.resolve(p, &format!("{id}.ProtocolType"))?,
            None => None,
        };
        if protocol.as_deref() == Some("WEBSOCKET") {
            apis.push((id, v));
        }
    }
    let [(api_id, api)] = apis.as_slice() else {
        return Err(err(format!(
            "expected one WEBSOCKET AWS::ApiGatewayV2::Api, found {}",
            apis.len()
        )));
    };
    let route_selection_expression = r.require(
        props(api)
            .get("RouteSelectionExpression")
            .ok_or_else(|| err(format!("{api_id} has no RouteSelectionExpression")))?,
        &format!("{api_id}.RouteSelectionExpression"),
    )?;
    let mut stage = None;
    for (id, v) in of_type("AWS::ApiGatewayV2::Stage") {
        if let Some(s) = props(v).get("StageName") {
            stage = Some(r.require(s, &format!("{id}.StageName"))?);
            break;
        }
    }
    let stage = stage.ok_or_else(|| err("no AWS::ApiGatewayV2::Stage with a StageName"))?;

    let integrations: HashMap<String, String> = of_type("AWS::ApiGatewayV2::Integration")
        .filter_map(|(id, v)| Some((id, referenced_id(props(v).get("IntegrationUri")?, ".Arn")?)))
        .collect();
    let mut routes = BTreeMap::new();
    for (id, v) in of_type("AWS::ApiGatewayV2::Route") {
        let p = props(v);
        let key = r.require(
            p.get("RouteKey")
                .ok_or_else(|| err(format!("{id} has no RouteKey")))?,
            &format!("{id}.RouteKey"),
        )?;
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
    let mut subscriptions: Vec<(String, S3Subscription)> = Vec::new();
    for (id, v) in of_type("AWS::Serverless::Function") {
        let p = props(v);
        // The function's own value, else Globals'; AWS::NoValue counts as absent.
        let number = |k: &str, default: u64| -> Result<u64, DevError> {
            for (source, name) in [(&p, id.as_str()), (&globals, "Globals.Function")] {
                if let Some(v) = source.get(k) {
                    let what = format!("{name}.{k}");
                    if let Some(s) = r.resolve(v, &what)? {
                        return s
                            .parse()
                            .map_err(|_| err(format!("{what}: {s:?} is not a whole number")));
                    }
                }
            }
            Ok(default)
        };
        let binary = v
            .get("Metadata")
            .and_then(|m| m.get("BuildProperties"))
            .and_then(|b| b.get("Binary"))
            .and_then(Value::as_str)
            .ok_or_else(|| err(format!("{id} has no Metadata.BuildProperties.Binary")))?;
        let mut env = BTreeMap::new();
        for (source, name) in [(&globals, "Globals.Function"), (&p, id.as_str())] {
            if let Some(vars) = source.get("Environment").and_then(|e| e.get("Variables")) {
                let vars = vars
                    .as_mapping()
                    .ok_or_else(|| err(format!("{name}.Environment.Variables is not a mapping")))?;
                for (k, v) in vars {
                    let k = k.as_str().ok_or_else(|| {
                        err(format!(
                            "{name}.Environment.Variables: a name is not a string"
                        ))
                    })?;
                    let what = if name == id {
                        format!("{id}.Environment.Variables.{k}")
                    } else {
                        format!("{id} (from {name}.Environment.Variables.{k})")
                    };
                    match r.resolve(v, &what)? {
                        Some(v) => env.insert(k.to_owned(), v),
                        None => env.remove(k),
                    };
                }
            }
        }
        let memory_mb = number("MemorySize", 128)?;
        functions.insert(
            id.clone(),
            FunctionSpec {
                logical_id: id.clone(),
                binary: binary.to_owned(),
                timeout: Duration::from_secs(number("Timeout", 3)?),
                memory_mb: u32::try_from(memory_mb)
                    .map_err(|_| err(format!("{id}.MemorySize is too large")))?,
                env,
            },
        );
        if let Some(events) = p.get("Events").and_then(Value::as_mapping) {
            for (event_id, e) in events {
                let event_id = event_id.as_str().unwrap_or_default();
                if e.get("Type").and_then(Value::as_str) == Some("S3") {
                    subscriptions.push(s3_subscription(&r, &id, event_id, e, resources)?);
                }
            }
        }
    }
    for (key, f) in &routes {
        if !functions.contains_key(f) {
            return Err(err(format!(
                "route {key} invokes {f}, which is not an AWS::Serverless::Function"
            )));
        }
    }

    let mut buckets = Vec::new();
    for (id, v) in of_type("AWS::S3::Bucket") {
        let p = props(v);
        if p.get("NotificationConfiguration")
            .and_then(|n| n.get("LambdaConfigurations"))
            .is_some()
        {
            return Err(err(format!(
                "{id}.NotificationConfiguration.LambdaConfigurations is not emulated locally; \
                 give the function an Events entry of Type: S3 instead"
            )));
        }
        let name = r
            .bucket_name(&id, 0)
            .map_err(|e| err(format!("{id}.BucketName: {e}")))?;
        let cors = match p.get("CorsConfiguration").and_then(|c| c.get("CorsRules")) {
            None => Vec::new(),
            Some(rules) => rules
                .as_sequence()
                .ok_or_else(|| err(format!("{id}.CorsConfiguration.CorsRules is not a list")))?
                .iter()
                .enumerate()
                .map(|(i, rule)| {
                    cors_rule(&r, &format!("{id}.CorsConfiguration.CorsRules[{i}]"), rule)
                })
                .collect::<Result<_, _>>()?,
        };
        let notifications = subscriptions
            .iter()
            .filter(|(bucket, _)| *bucket == id)
            .map(|(_, s)| s.clone())
            .collect();
        buckets.push(BucketSpec {
            name,
            logical_id: id,
            cors,
            notifications,
        });
    }
    for (bucket, s) in &subscriptions {
        if !buckets.iter().any(|b| b.logical_id == *bucket) {
            return Err(err(format!(
                "{}.Events.{}.Bucket: bucket {bucket} does not exist (its Condition is false)",
                s.function, s.event_id
            )));
        }
    }
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

fn cors_rule(r: &Resolver, what: &str, rule: &Value) -> Result<CorsRule, DevError> {
    let list = |k: &str, required: bool| -> Result<Vec<String>, DevError> {
        match rule.get(k) {
            Some(v) => r.resolve_list(v, &format!("{what}.{k}")),
            None if required => Err(err(format!("{what} has no {k}"))),
            None => Ok(Vec::new()),
        }
    };
    let max_age_seconds = match rule.get("MaxAge") {
        None => None,
        Some(v) => match r.resolve(v, &format!("{what}.MaxAge"))? {
            None => None,
            Some(s) => Some(
                s.parse()
                    .map_err(|_| err(format!("{what}.MaxAge: {s:?} is not a whole number")))?,
            ),
        },
    };
    Ok(CorsRule {
        allowed_methods: list("AllowedMethods", true)?
            .into_iter()
            .map(|m| m.to_ascii_uppercase())
            .collect(),
        allowed_origins: list("AllowedOrigins", true)?,
        allowed_headers: list("AllowedHeaders", false)?,
        exposed_headers: list("ExposedHeaders", false)?,
        max_age_seconds,
    })
}

/// One `Events` entry of `Type: S3`, with the logical id of the bucket it names.
fn s3_subscription(
    r: &Resolver,
    function: &str,
    event_id: &str,
    e: &Value,
    resources: &Mapping,
) -> Result<(String, S3Subscription), DevError> {
    let what = format!("{function}.Events.{event_id}");
    let p = e
        .get("Properties")
        .ok_or_else(|| err(format!("{what} has no Properties")))?;
    let bucket = p
        .get("Bucket")
        .and_then(ref_target)
        .filter(|b| {
            resources
                .get(*b)
                .and_then(|res| res.get("Type"))
                .and_then(Value::as_str)
                == Some("AWS::S3::Bucket")
        })
        .ok_or_else(|| {
            err(format!(
                "{what}.Bucket must be !Ref of an AWS::S3::Bucket of this template"
            ))
        })?;
    let events = r.resolve_list(
        p.get("Events")
            .ok_or_else(|| err(format!("{what} has no Events")))?,
        &format!("{what}.Events"),
    )?;
    if events.is_empty() || events.iter().any(|e| !e.starts_with("s3:")) {
        return Err(err(format!(
            "{what}.Events: expected S3 event types such as s3:ObjectCreated:*, got {events:?}"
        )));
    }
    let mut sub = S3Subscription {
        function: function.to_owned(),
        event_id: event_id.to_owned(),
        events,
        prefix: None,
        suffix: None,
    };
    if let Some(rules) = p.get("Filter") {
        let rules = rules
            .get("S3Key")
            .and_then(|k| k.get("Rules"))
            .and_then(Value::as_sequence)
            .ok_or_else(|| err(format!("{what}.Filter: expected S3Key.Rules, a list")))?;
        for (i, rule) in rules.iter().enumerate() {
            let at = format!("{what}.Filter.S3Key.Rules[{i}]");
            let name = r.require(
                rule.get("Name")
                    .ok_or_else(|| err(format!("{at} has no Name")))?,
                &format!("{at}.Name"),
            )?;
            let value = r.require(
                rule.get("Value")
                    .ok_or_else(|| err(format!("{at} has no Value")))?,
                &format!("{at}.Value"),
            )?;
            match name.to_ascii_lowercase().as_str() {
                "prefix" => sub.prefix = Some(value),
                "suffix" => sub.suffix = Some(value),
                _ => return Err(err(format!("{at}.Name: {name:?} is not prefix or suffix"))),
            }
        }
    }
    Ok((bucket.to_owned(), sub))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> SamApp {
        Template::project().unwrap().app(&HashMap::new()).unwrap()
    }

    fn from_yaml(yaml: &str) -> Result<SamApp, DevError> {
        Template::parse(yaml)?.app(&HashMap::new())
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
    fn the_templates_routes_stage_and_selection_expression_are_read() {
        // GIVEN the project's template
        // WHEN it is read
        let a = app();
        // THEN the API is the one clients talk to
        assert_eq!(a.api.route_selection_expression, "$request.body.action");
        assert_eq!(a.api.stage, "prod");
        assert_eq!(a.api.routes["$connect"], "ConnectFunction");
        assert_eq!(a.api.routes["$default"], "DefaultFunction");
        assert_eq!(a.api.routes["$disconnect"], "DisconnectFunction");
    }

    #[test]
    fn functions_get_binary_limits_and_resolved_environment() {
        // GIVEN the project's template
        let a = app();
        // THEN each function has its binary, limits and resolved variables
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
        assert_eq!(
            d.env["MEDIA_BUCKET"],
            "chat-media-00000000-0000-4000-8000-000000000000"
        );
        let c = &a.functions["ConnectFunction"];
        // CreateJwtSecret holds (JwtSecretArn defaults to ""), so the created secret is used
        assert_eq!(c.env["JWT_SECRET_ARN"], "JwtSecret");
        assert!(!a.functions["DisconnectFunction"]
            .env
            .contains_key("JWT_SECRET_ARN"));
        let t = &a.functions["ThumbnailFunction"];
        assert_eq!((t.binary.as_str(), t.memory_mb), ("chat-thumbnail", 1024));
    }

    #[test]
    fn the_media_bucket_has_its_name_cors_rules_and_the_thumbnail_subscription() {
        // GIVEN the project's template
        let a = app();
        // THEN the media bucket is named from the local stack id, with its CORS rule
        let b = &a.buckets[0];
        assert_eq!(a.buckets.len(), 1);
        assert_eq!(b.logical_id, "MediaBucket");
        assert_eq!(b.name, "chat-media-00000000-0000-4000-8000-000000000000");
        assert_eq!(
            b.cors,
            vec![CorsRule {
                allowed_methods: vec!["GET".into(), "HEAD".into(), "PUT".into(), "POST".into()],
                allowed_origins: vec!["*".into()],
                allowed_headers: vec!["*".into()],
                exposed_headers: vec!["ETag".into()],
                max_age_seconds: Some(3000),
            }]
        );
        // AND uploaded images go to the thumbnail function
        assert_eq!(
            b.notifications,
            vec![S3Subscription {
                function: "ThumbnailFunction".into(),
                event_id: "ImageUploaded".into(),
                events: vec!["s3:ObjectCreated:*".into()],
                prefix: Some("u/i/".into()),
                suffix: None,
            }]
        );
        assert_eq!(a.bucket(&b.name), Some(b));
    }

    #[test]
    fn cors_origins_come_from_a_comma_delimited_list_parameter() {
        // GIVEN two origins as the MediaCorsOrigins parameter
        let overrides = HashMap::from([(
            "MediaCorsOrigins".to_string(),
            "https://a.example,https://b.example".to_string(),
        )]);
        // WHEN the template is read
        let a = Template::project().unwrap().app(&overrides).unwrap();
        // THEN the rule allows exactly those
        assert_eq!(
            a.buckets[0].cors[0].allowed_origins,
            vec!["https://a.example", "https://b.example"]
        );
    }

    #[test]
    fn parameter_overrides_flow_into_conditions_and_values() {
        // GIVEN a stage and an existing secret as parameters
        let overrides = HashMap::from([
            ("StageName".to_string(), "dev".to_string()),
            ("JwtSecretArn".to_string(), "arn:x".to_string()),
        ]);
        // WHEN the template is read
        let a = Template::project().unwrap().app(&overrides).unwrap();
        // THEN both are used
        assert_eq!(a.api.stage, "dev");
        assert_eq!(
            a.functions["ConnectFunction"].env["JWT_SECRET_ARN"],
            "arn:x"
        );
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
    fn sub_handles_literals_variables_and_refuses_unknown_names() {
        // GIVEN a parameter and a Sub over it, a literal and a pseudo parameter
        let doc: Value =
            serde_yaml::from_str("Parameters: {P: {Default: v}}\nResources: {}").unwrap();
        let r = Resolver::new(&doc, &HashMap::new()).unwrap();
        // THEN each is replaced as CloudFormation does
        assert_eq!(
            r.sub("a-${P}-${!Lit}-${AWS::Region}", &HashMap::new(), 0)
                .unwrap(),
            "a-v-${Lit}-us-east-1"
        );
        // AND an unknown name is an error, not an empty string
        assert!(r.sub("a-${Q}", &HashMap::new(), 0).is_err());
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
}
