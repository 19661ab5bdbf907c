//! Each `AWS::DynamoDB::Table`, read through the resolver: its name (`TableName`, else its
//! logical id), attributes, key schema, global secondary indexes and TTL attribute.

use super::{props, Resources};
use crate::resolve::{err, Resolver};
use crate::DevError;
use serde_yaml::Value;

#[derive(Debug, Clone, PartialEq)]
pub struct TableSpec {
    pub logical_id: String,
    /// `TableName` resolved, else the logical id (as `!Ref` gives it locally).
    pub name: String,
    pub attributes: Vec<(String, String)>,
    pub key_schema: Vec<(String, String)>,
    pub indexes: Vec<IndexSpec>,
    pub ttl_attribute: Option<String>,
    /// `StreamSpecification.StreamViewType` (`NEW_IMAGE`, …) when the table has a stream.
    pub stream_view_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IndexSpec {
    pub name: String,
    pub key_schema: Vec<(String, String)>,
    pub projection_type: String,
    pub non_key_attributes: Vec<String>,
}

pub(super) fn read(r: &Resolver, resources: &Resources) -> Result<Vec<TableSpec>, DevError> {
    let mut tables = Vec::new();
    for (id, v) in resources.of_type("AWS::DynamoDB::Table") {
        let p = props(v);
        let at = |k: &str| format!("{id}.{k}");
        let name = r
            .table_name(&id, 0)
            .map_err(|e| err(format!("{id}.TableName: {e}")))?;
        let indexes = match p.get("GlobalSecondaryIndexes") {
            None => Vec::new(),
            Some(list) => list
                .as_sequence()
                .ok_or_else(|| err(format!("{id}.GlobalSecondaryIndexes is not a list")))?
                .iter()
                .enumerate()
                .map(|(i, g)| index(r, &format!("{id}.GlobalSecondaryIndexes[{i}]"), g))
                .collect::<Result<_, _>>()?,
        };
        tables.push(TableSpec {
            logical_id: id.clone(),
            name,
            attributes: pairs(
                r,
                &at("AttributeDefinitions"),
                p.get("AttributeDefinitions"),
                ("AttributeName", "AttributeType"),
            )?,
            key_schema: pairs(
                r,
                &at("KeySchema"),
                p.get("KeySchema"),
                ("AttributeName", "KeyType"),
            )?,
            indexes,
            ttl_attribute: ttl(r, &id, p.get("TimeToLiveSpecification"))?,
            stream_view_type: match p.get("StreamSpecification") {
                None => None,
                Some(s) => Some(r.require(
                    s.get("StreamViewType").ok_or_else(|| {
                        err(format!("{id}.StreamSpecification has no StreamViewType"))
                    })?,
                    &at("StreamSpecification.StreamViewType"),
                )?),
            },
        });
    }
    Ok(tables)
}

fn index(r: &Resolver, what: &str, g: &Value) -> Result<IndexSpec, DevError> {
    let projection = g
        .get("Projection")
        .ok_or_else(|| err(format!("{what} has no Projection")))?;
    let required = |v: &Value, k: &str, at: &str| {
        let value = v.get(k).ok_or_else(|| err(format!("{at} has no {k}")))?;
        r.require(value, &format!("{at}.{k}"))
    };
    let projection_at = format!("{what}.Projection");
    Ok(IndexSpec {
        name: required(g, "IndexName", what)?,
        key_schema: pairs(
            r,
            &format!("{what}.KeySchema"),
            g.get("KeySchema"),
            ("AttributeName", "KeyType"),
        )?,
        projection_type: required(projection, "ProjectionType", &projection_at)?,
        non_key_attributes: match projection.get("NonKeyAttributes") {
            None => Vec::new(),
            Some(v) => r.resolve_list(v, &format!("{projection_at}.NonKeyAttributes"))?,
        },
    })
}

/// The TTL attribute when `TimeToLiveSpecification.Enabled` is true.
fn ttl(r: &Resolver, id: &str, spec: Option<&Value>) -> Result<Option<String>, DevError> {
    let Some(spec) = spec else { return Ok(None) };
    let what = format!("{id}.TimeToLiveSpecification");
    let enabled = match spec.get("Enabled") {
        Some(v) => r.require(v, &format!("{what}.Enabled"))? == "true",
        None => false,
    };
    if !enabled {
        return Ok(None);
    }
    let name = spec
        .get("AttributeName")
        .ok_or_else(|| err(format!("{what} has no AttributeName")))?;
    r.require(name, &format!("{what}.AttributeName")).map(Some)
}

/// `[{a: x, b: y}, …]` as `(x, y)` pairs; a missing list or entry is refused.
fn pairs(
    r: &Resolver,
    what: &str,
    v: Option<&Value>,
    (a, b): (&str, &str),
) -> Result<Vec<(String, String)>, DevError> {
    let list = v
        .and_then(Value::as_sequence)
        .filter(|l| !l.is_empty())
        .ok_or_else(|| err(format!("{what}: expected a list of {a}/{b}")))?;
    list.iter()
        .enumerate()
        .map(|(i, item)| {
            let at = format!("{what}[{i}]");
            let get = |k: &str| {
                let value = item.get(k).ok_or_else(|| err(format!("{at} has no {k}")))?;
                r.require(value, &format!("{at}.{k}"))
            };
            Ok((get(a)?, get(b)?))
        })
        .collect()
}
