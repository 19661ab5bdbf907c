//! CloudFormation intrinsics as the local stack sees them: parameters take their defaults or
//! the overrides given (checked against the template's constraints), resources of the kinds
//! the stack emulates their local names, pseudo parameters local values.
//!
//! What it cannot resolve exactly is refused, naming the resource and property: a `Ref` or
//! `GetAtt` of a resource type the stack does not emulate, an unknown pseudo parameter, an
//! intrinsic it does not implement. Values the stack supplies itself (such as a secret that
//! Secrets Manager would hold) are not resolved at all: see
//! [`crate::stack::StackOptions::supplied`]. `AWS::NoValue` (also chosen by an `!If`) removes a
//! value, as CloudFormation does.

use crate::DevError;
use serde_yaml::{Mapping, Value};
use std::collections::HashMap;

/// Values that stand in for AWS pseudo parameters locally.
pub const LOCAL_REGION: &str = "us-east-1";
pub const LOCAL_ACCOUNT: &str = "000000000000";
pub const LOCAL_STACK_NAME: &str = "local";
/// `AWS::StackId` locally; its last part is what `!Select [2, !Split ["/", ...]]` picks.
pub const LOCAL_STACK_ID: &str =
    "arn:aws:cloudformation:us-east-1:000000000000:stack/local/00000000-0000-4000-8000-000000000000";
/// The API id the local gateway reports (`requestContext.apiId`, `!Ref <Api>`).
pub const LOCAL_API_ID: &str = "local";

pub(crate) fn err(msg: impl Into<String>) -> DevError {
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

/// Resolves CloudFormation intrinsics the way a local stack sees them (see the module).
pub struct Resolver<'a> {
    params: HashMap<String, Val>,
    resources: &'a Mapping,
    conditions: &'a Mapping,
}

impl<'a> Resolver<'a> {
    pub fn new(doc: &'a Value, overrides: &HashMap<String, String>) -> Result<Self, DevError> {
        static EMPTY: std::sync::OnceLock<Mapping> = std::sync::OnceLock::new();
        let empty = EMPTY.get_or_init(Mapping::new);
        check_overrides(doc.get("Parameters").and_then(Value::as_mapping), overrides)?;
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
            "Sub" => self.fn_sub(v, depth).map(|s| Some(Val::Str(s))),
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
            "Select" => self.fn_select(&args(2)?[..], depth),
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

    /// `Fn::Sub`: a string, or `[string, variables]`.
    fn fn_sub(&self, v: &Value, depth: u8) -> Res<String> {
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
        self.sub(text, &vars, depth)
    }

    /// `Fn::Select [index, list]`.
    fn fn_select(&self, a: &[Value], depth: u8) -> Res<Option<Val>> {
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
                    Some("AWS::DynamoDB::Table") => {
                        self.table_name(name, depth).map(|n| Some(Val::Str(n)))
                    }
                    Some("AWS::Serverless::Function" | "AWS::Lambda::Function") => s(name),
                    kind => Err(format!(
                        "!Ref {name}: {} is not emulated locally (have the stack supply the \
                         value that needs it)",
                        kind.unwrap_or("a resource without a Type")
                    )),
                }
            }
        }
    }

    /// A bucket's `BucketName` resolved, or its logical id in lowercase without one.
    pub(crate) fn bucket_name(&self, id: &str, depth: u8) -> Res<String> {
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

    /// A table's `TableName` resolved, or its logical id without one.
    pub(crate) fn table_name(&self, id: &str, depth: u8) -> Res<String> {
        let named = self
            .resources
            .get(id)
            .and_then(|r| r.get("Properties"))
            .and_then(|p| p.get("TableName"));
        match named {
            None => Ok(id.to_owned()),
            Some(v) => self
                .eval_str(v, depth + 1)
                .map_err(|e| format!("{id}.TableName: {e}")),
        }
    }

    /// A queue's `QueueName` resolved, or its logical id without one.
    pub(crate) fn queue_name(&self, id: &str, depth: u8) -> Res<String> {
        let named = self
            .resources
            .get(id)
            .and_then(|r| r.get("Properties"))
            .and_then(|p| p.get("QueueName"));
        match named {
            None => Ok(id.to_owned()),
            Some(v) => self
                .eval_str(v, depth + 1)
                .map_err(|e| format!("{id}.QueueName: {e}")),
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
                "arn:aws:dynamodb:{LOCAL_REGION}:{LOCAL_ACCOUNT}:table/{}",
                self.table_name(res, depth)?
            )),
            ("AWS::DynamoDB::Table", "StreamArn") => Ok(format!(
                "arn:aws:dynamodb:{LOCAL_REGION}:{LOCAL_ACCOUNT}:table/{}/stream/local",
                self.table_name(res, depth)?
            )),
            ("AWS::SQS::Queue", "Arn") => Ok(format!(
                "arn:aws:sqs:{LOCAL_REGION}:{LOCAL_ACCOUNT}:{}",
                self.queue_name(res, depth)?
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
            _ => Err(format!(
                "!GetAtt {res}.{attr}: {attr} of {kind} is not emulated locally"
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

pub(crate) fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Parameter overrides must name a parameter of the template and satisfy its constraints
/// (`Type: Number`, `AllowedValues`, `MinValue`, `MaxValue`), as CloudFormation would refuse
/// them at deploy time.
fn check_overrides(
    declared: Option<&Mapping>,
    overrides: &HashMap<String, String>,
) -> Result<(), DevError> {
    let mut names: Vec<&String> = overrides.keys().collect();
    names.sort();
    for name in names {
        let value = &overrides[name];
        let Some(p) = declared.and_then(|d| d.get(name.as_str())) else {
            let known: Vec<&str> = declared
                .into_iter()
                .flat_map(|d| d.keys())
                .filter_map(Value::as_str)
                .collect();
            return Err(err(format!(
                "parameter override {name}: the template has no such parameter (it has: {})",
                known.join(", ")
            )));
        };
        check_value(p, value)
            .map_err(|e| err(format!("parameter override {name}={value}: {e}")))?;
    }
    Ok(())
}

/// `value` against one parameter's declaration.
fn check_value(p: &Value, value: &str) -> Res<()> {
    if let Some(allowed) = p.get("AllowedValues").and_then(Value::as_sequence) {
        let allowed: Vec<String> = allowed.iter().filter_map(scalar).collect();
        if !allowed.iter().any(|a| a == value) {
            return Err(format!("not one of {}", allowed.join(", ")));
        }
    }
    let bound = |k: &str| {
        p.get(k)
            .and_then(scalar)
            .and_then(|b| b.parse::<f64>().ok())
    };
    let is_number = p.get("Type").and_then(Value::as_str) == Some("Number");
    if is_number || bound("MinValue").is_some() || bound("MaxValue").is_some() {
        let n: f64 = value
            .trim()
            .parse()
            .map_err(|_| "not a number".to_owned())?;
        if let Some(min) = bound("MinValue").filter(|min| n < *min) {
            return Err(format!("below the MinValue {min}"));
        }
        if let Some(max) = bound("MaxValue").filter(|max| n > *max) {
            return Err(format!("above the MaxValue {max}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
