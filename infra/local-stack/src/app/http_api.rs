//! The HTTP API: an `AWS::Serverless::HttpApi` (or SAM's implicit `ServerlessHttpApi` when a
//! function's `HttpApi` event names no `ApiId`), its stage, and the routes the functions'
//! `Events` of `Type: HttpApi` give it (method, path with `{param}` / `{param+}`, payload
//! format). One HTTP API per template: which one a client means would otherwise be a guess.

use super::api::ref_target;
use super::{props, HttpApiSpec, HttpRoute, Resources};
use crate::resolve::{err, Resolver};
use crate::DevError;
use serde_yaml::Value;

/// SAM's name for the API it creates for `HttpApi` events without an `ApiId`.
const IMPLICIT: &str = "ServerlessHttpApi";

/// An `HttpApi` event of a function, before the APIs are known.
pub(super) struct HttpEvent {
    pub api: String,
    pub route: HttpRoute,
}

/// One `Events` entry of `Type: HttpApi` of function `function`.
pub(super) fn event(
    r: &Resolver,
    function: &str,
    event_id: &str,
    e: &Value,
) -> Result<HttpEvent, DevError> {
    let what = format!("{function}.Events.{event_id}");
    let p = props(e);
    let api = match p.get("ApiId") {
        None => IMPLICIT.to_owned(),
        Some(v) => ref_target(v)
            .ok_or_else(|| err(format!("{what}.ApiId: expected !Ref of an HttpApi")))?
            .to_owned(),
    };
    if p.get("Auth").is_some() {
        return Err(err(format!(
            "{what}.Auth: HTTP API authorizers are not emulated locally"
        )));
    }
    let path = match p.get("Path") {
        Some(v) => r.require(v, &format!("{what}.Path"))?,
        None => "$default".to_owned(),
    };
    if path != "$default" && !path.starts_with('/') {
        return Err(err(format!("{what}.Path: {path:?} does not start with /")));
    }
    let method = match p.get("Method") {
        Some(v) => r
            .require(v, &format!("{what}.Method"))?
            .to_ascii_uppercase(),
        None => "ANY".to_owned(),
    };
    let method = match method.as_str() {
        "X-AMAZON-APIGATEWAY-ANY-METHOD" => "ANY".to_owned(),
        "ANY" | "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS" => method,
        other => {
            return Err(err(format!(
                "{what}.Method: {other:?} is not an HTTP method"
            )))
        }
    };
    let payload_format = match p.get("PayloadFormatVersion") {
        Some(v) => r.require(v, &format!("{what}.PayloadFormatVersion"))?,
        None => "2.0".to_owned(),
    };
    if payload_format != "2.0" {
        return Err(err(format!(
            "{what}.PayloadFormatVersion: only 2.0 is emulated locally, not {payload_format}"
        )));
    }
    Ok(HttpEvent {
        api,
        route: HttpRoute {
            method,
            path,
            function: function.to_owned(),
        },
    })
}

/// The template's HTTP API with every route the events give it; `None` when there is none.
pub(super) fn read(
    r: &Resolver,
    resources: &Resources,
    events: Vec<HttpEvent>,
) -> Result<Option<HttpApiSpec>, DevError> {
    let mut apis: Vec<(String, Option<String>)> = Vec::new();
    for (id, v) in resources.of_type("AWS::Serverless::HttpApi") {
        let p = props(v);
        if p.get("Auth").is_some() {
            return Err(err(format!(
                "{id}.Auth: HTTP API authorizers are not emulated locally"
            )));
        }
        let stage = match p.get("StageName") {
            Some(s) => Some(r.require(s, &format!("{id}.StageName"))?),
            None => None,
        };
        apis.push((id, stage.filter(|s| s != "$default")));
    }
    if events.iter().any(|e| e.api == IMPLICIT) && !apis.iter().any(|(id, _)| id == IMPLICIT) {
        apis.push((IMPLICIT.to_owned(), None));
    }
    let (id, stage) = match apis.len() {
        0 => return Ok(None),
        1 => apis.remove(0),
        n => {
            return Err(err(format!(
                "{n} HTTP APIs ({}); the local stack serves one",
                apis.iter()
                    .map(|(id, _)| id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
    };
    let mut routes: Vec<HttpRoute> = Vec::new();
    for e in events {
        if e.api != id {
            return Err(err(format!(
                "{}: its HttpApi event names {}, which is not an AWS::Serverless::HttpApi of this template",
                e.route.function, e.api
            )));
        }
        if let Some(same) = routes
            .iter()
            .find(|o| o.method == e.route.method && o.path == e.route.path)
        {
            return Err(err(format!(
                "route {} {} is declared by both {} and {}",
                e.route.method, e.route.path, same.function, e.route.function
            )));
        }
        routes.push(e.route);
    }
    Ok(Some(HttpApiSpec {
        logical_id: id,
        stage,
        routes,
    }))
}

/// A request path's parameters: (name, value) in the route's order.
pub type PathParams = Vec<(String, String)>;

/// How well a route path matches: literal segments, and whether it has no greedy parameter.
type Fit = (usize, bool, PathParams);

impl HttpApiSpec {
    /// The route a request takes, with its path parameters, as API Gateway chooses: a route of
    /// the exact method before `ANY`, the path with the most literal segments before one with
    /// parameters, a greedy `{name+}` last, `$default` when nothing else matches.
    pub fn route(&self, method: &str, path: &str) -> Option<(&HttpRoute, PathParams)> {
        let mut best: Option<((usize, bool, bool), &HttpRoute, PathParams)> = None;
        for route in &self.routes {
            if route.method != "ANY" && route.method != method {
                continue;
            }
            let Some((literals, greedy, params)) = match_path(&route.path, path) else {
                continue;
            };
            let rank = (literals, !greedy, route.method != "ANY");
            if best.as_ref().is_none_or(|(b, _, _)| rank > *b) {
                best = Some((rank, route, params));
            }
        }
        best.map(|(_, r, p)| (r, p)).or_else(|| {
            let d = self.routes.iter().find(|r| r.path == "$default")?;
            Some((d, Vec::new()))
        })
    }
}

/// Whether `path` matches the route path `pattern`: (literal segments, greedy, parameters).
fn match_path(pattern: &str, path: &str) -> Option<Fit> {
    if pattern == "$default" {
        return None;
    }
    let pat: Vec<&str> = pattern.trim_start_matches('/').split('/').collect();
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut params = Vec::new();
    let mut literals = 0;
    for (i, p) in pat.iter().enumerate() {
        if let Some(name) = p.strip_prefix('{').and_then(|p| p.strip_suffix("+}")) {
            let rest = segs.get(i..)?.join("/");
            if rest.is_empty() || i != pat.len() - 1 {
                return None;
            }
            params.push((name.to_owned(), rest));
            return Some((literals, true, params));
        }
        let seg = segs.get(i)?;
        if let Some(name) = p.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            if seg.is_empty() {
                return None;
            }
            params.push((name.to_owned(), (*seg).to_owned()));
        } else if p == seg {
            literals += 1;
        } else {
            return None;
        }
    }
    (segs.len() == pat.len()).then_some((literals, false, params))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(method: &str, path: &str, f: &str) -> HttpRoute {
        HttpRoute {
            method: method.into(),
            path: path.into(),
            function: f.into(),
        }
    }

    #[test]
    fn the_most_specific_route_wins_as_on_aws() {
        let api = HttpApiSpec {
            logical_id: "Api".into(),
            stage: None,
            routes: vec![
                route("POST", "/login", "Login"),
                route("ANY", "/wechat/push/{app}", "Push"),
                route("GET", "/wechat/push/{app}", "PushGet"),
                route("ANY", "/files/{rest+}", "Files"),
                route("GET", "/files/readme", "Readme"),
                route("ANY", "$default", "Fallback"),
            ],
        };
        let f = |m: &str, p: &str| api.route(m, p).map(|(r, ps)| (r.function.clone(), ps));
        assert_eq!(f("POST", "/login").unwrap().0, "Login");
        assert_eq!(f("GET", "/login").unwrap().0, "Fallback");
        let (name, params) = f("POST", "/wechat/push/shop").unwrap();
        assert_eq!(name, "Push");
        assert_eq!(params, vec![("app".to_string(), "shop".to_string())]);
        assert_eq!(f("GET", "/wechat/push/shop").unwrap().0, "PushGet");
        assert_eq!(f("GET", "/files/readme").unwrap().0, "Readme");
        let (name, params) = f("GET", "/files/a/b.txt").unwrap();
        assert_eq!(name, "Files");
        assert_eq!(params, vec![("rest".to_string(), "a/b.txt".to_string())]);
        assert_eq!(f("GET", "/wechat/push/").unwrap().0, "Fallback");
        let no_default = HttpApiSpec {
            routes: api.routes[..1].to_vec(),
            ..api.clone()
        };
        assert!(no_default.route("POST", "/login/x").is_none());
        assert!(no_default.route("POST", "/logi").is_none());
    }
}
