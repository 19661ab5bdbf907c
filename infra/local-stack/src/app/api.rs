//! The one WebSocket API: its route selection expression, its stage, and each route's function
//! (route → integration → function).

use super::{props, ApiSpec, Resources};
use crate::resolve::{err, Resolver};
use crate::DevError;
use serde_yaml::Value;
use std::collections::{BTreeMap, HashMap};

pub(super) fn read(r: &Resolver, resources: &Resources) -> Result<ApiSpec, DevError> {
    let (api_id, api) = websocket_api(r, resources)?;
    let route_selection_expression = r.require(
        props(api)
            .get("RouteSelectionExpression")
            .ok_or_else(|| err(format!("{api_id} has no RouteSelectionExpression")))?,
        &format!("{api_id}.RouteSelectionExpression"),
    )?;
    let stage = stage(r, resources, &api_id)?;
    let integrations = integrations(resources)?;
    let mut routes = BTreeMap::new();
    for (id, v) in resources.of_type("AWS::ApiGatewayV2::Route") {
        let p = props(v);
        let key = r.require(
            p.get("RouteKey")
                .ok_or_else(|| err(format!("{id} has no RouteKey")))?,
            &format!("{id}.RouteKey"),
        )?;
        if p.get("AuthorizerId").is_some() {
            return Err(err(format!(
                "{id}.AuthorizerId: route authorizers are not emulated locally"
            )));
        }
        let integration = p
            .get("Target")
            .and_then(|t| referenced_id(t, ""))
            .ok_or_else(|| err(format!("{id}.Target: expected integrations/${{...}}")))?;
        let function = integrations.get(&integration).ok_or_else(|| {
            err(format!(
                "{id}.Target: {integration} is not an AWS::ApiGatewayV2::Integration of this template"
            ))
        })?;
        routes.insert(key, function.clone());
    }
    Ok(ApiSpec {
        logical_id: api_id,
        route_selection_expression,
        stage,
        routes,
    })
}

/// The template's one `AWS::ApiGatewayV2::Api` of `ProtocolType: WEBSOCKET`.
fn websocket_api<'a>(
    r: &Resolver,
    resources: &Resources<'a>,
) -> Result<(String, &'a Value), DevError> {
    let mut apis = Vec::new();
    for (id, v) in resources.of_type("AWS::ApiGatewayV2::Api") {
        let protocol = match props(v).get("ProtocolType") {
            Some(p) => r.resolve(p, &format!("{id}.ProtocolType"))?,
            None => None,
        };
        if protocol.as_deref() == Some("WEBSOCKET") {
            apis.push((id, v));
        }
    }
    match apis.len() {
        1 => Ok(apis.remove(0)),
        n => Err(err(format!(
            "expected one WEBSOCKET AWS::ApiGatewayV2::Api, found {n}"
        ))),
    }
}

/// The API's one stage name. Several stages of one API are refused: which the clients mean
/// would be a guess.
fn stage(r: &Resolver, resources: &Resources, api_id: &str) -> Result<String, DevError> {
    let mut stages = Vec::new();
    for (id, v) in resources.of_type("AWS::ApiGatewayV2::Stage") {
        let p = props(v);
        let of_api = p.get("ApiId").and_then(ref_target);
        if of_api.is_some_and(|a| a != api_id) {
            continue;
        }
        let name = p
            .get("StageName")
            .ok_or_else(|| err(format!("{id} has no StageName")))?;
        stages.push((id.clone(), r.require(name, &format!("{id}.StageName"))?));
    }
    match stages.as_slice() {
        [(_, name)] => Ok(name.clone()),
        [] => Err(err(format!("{api_id}: no AWS::ApiGatewayV2::Stage"))),
        several => Err(err(format!(
            "{api_id}: several stages ({}); the local stack serves one",
            several
                .iter()
                .map(|(id, _)| id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Integration → the function it invokes. An integration whose `IntegrationUri` names no
/// function (`${Function.Arn}`) is refused here, not later as a route error.
fn integrations(resources: &Resources) -> Result<HashMap<String, String>, DevError> {
    let mut out = HashMap::new();
    for (id, v) in resources.of_type("AWS::ApiGatewayV2::Integration") {
        let uri = props(v).get("IntegrationUri").cloned();
        let function = uri
            .as_ref()
            .and_then(|u| referenced_id(u, ".Arn"))
            .filter(|f| {
                let kind = resources.get(f).and_then(|r| r.get("Type"));
                kind.and_then(Value::as_str) == Some("AWS::Serverless::Function")
            })
            .ok_or_else(|| {
                err(format!(
                    "{id}.IntegrationUri: cannot tell which function of this template it \
                     invokes (expected a !Sub naming ${{Function.Arn}})"
                ))
            })?;
        out.insert(id, function);
    }
    Ok(out)
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
pub(super) fn ref_target(v: &Value) -> Option<&str> {
    match v {
        Value::Tagged(t) if t.tag == "Ref" => t.value.as_str(),
        Value::Mapping(m) if m.len() == 1 => m.get("Ref")?.as_str(),
        _ => None,
    }
}
