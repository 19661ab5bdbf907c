//! `template.yaml`, read and parsed once: the DynamoDB tables it declares (created here on a
//! local endpoint) and, through [`crate::sam`], the API, functions and buckets.

use crate::sam::SamApp;
use crate::DevError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_dynamodb::Client;
use serde_yaml::Value;
use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

/// A parsed template. Everything the local tools read from `template.yaml` comes from one of
/// these, so the file is read and parsed in one place.
#[derive(Debug, Clone)]
pub struct Template {
    doc: Value,
}

impl Template {
    /// Parses template text.
    pub fn parse(yaml: &str) -> Result<Self, DevError> {
        let doc: Value = serde_yaml::from_str(yaml).map_err(|e| err(e.to_string()))?;
        if !doc.is_mapping() {
            return Err(err("not a mapping"));
        }
        Ok(Template { doc })
    }

    pub fn from_file(path: &Path) -> Result<Self, DevError> {
        Self::parse(&std::fs::read_to_string(path)?)
    }

    /// The project's `template.yaml`, read and parsed once per process.
    pub fn project() -> Result<&'static Template, DevError> {
        static PROJECT: OnceLock<Result<Template, String>> = OnceLock::new();
        PROJECT
            .get_or_init(|| {
                Template::from_file(&crate::repo_root().join("template.yaml"))
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| DevError::Template(e.trim_start_matches("template.yaml: ").to_owned()))
    }

    /// The parsed document.
    pub fn doc(&self) -> &Value {
        &self.doc
    }

    /// The WebSocket API, functions and buckets, with `overrides` for parameters.
    pub fn app(&self, overrides: &HashMap<String, String>) -> Result<SamApp, DevError> {
        crate::sam::app(self, overrides)
    }

    /// Every `AWS::DynamoDB::Table`.
    pub fn tables(&self) -> Result<Vec<TableSpec>, DevError> {
        tables_of(&self.doc)
    }
}

/// One `AWS::DynamoDB::Table` of the template.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSpec {
    /// The resource's logical id (`MessagesTable`), which locally is also the table name.
    pub logical_id: String,
    pub attributes: Vec<(String, String)>,
    pub key_schema: Vec<(String, String)>,
    pub indexes: Vec<IndexSpec>,
    pub ttl_attribute: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IndexSpec {
    pub name: String,
    pub key_schema: Vec<(String, String)>,
    pub projection_type: String,
    pub non_key_attributes: Vec<String>,
}

fn err(msg: impl Into<String>) -> DevError {
    DevError::Template(msg.into())
}

fn str_of<'a>(v: &'a Value, k: &str) -> Result<&'a str, DevError> {
    v.get(k)
        .and_then(Value::as_str)
        .ok_or_else(|| err(format!("{k} missing or not a string")))
}

fn pairs(v: Option<&Value>, a: &str, b: &str) -> Result<Vec<(String, String)>, DevError> {
    v.and_then(Value::as_sequence)
        .ok_or_else(|| err(format!("expected a list of {a}/{b}")))?
        .iter()
        .map(|e| Ok((str_of(e, a)?.to_owned(), str_of(e, b)?.to_owned())))
        .collect()
}

fn tables_of(doc: &Value) -> Result<Vec<TableSpec>, DevError> {
    let resources = doc
        .get("Resources")
        .and_then(Value::as_mapping)
        .ok_or_else(|| err("no Resources"))?;
    let mut tables = Vec::new();
    for (id, res) in resources {
        if res.get("Type").and_then(Value::as_str) != Some("AWS::DynamoDB::Table") {
            continue;
        }
        let id = id
            .as_str()
            .ok_or_else(|| err("resource id is not a string"))?;
        let p = res
            .get("Properties")
            .ok_or_else(|| err(format!("{id} has no Properties")))?;
        let indexes = match p.get("GlobalSecondaryIndexes").and_then(Value::as_sequence) {
            None => Vec::new(),
            Some(list) => list
                .iter()
                .map(|g| {
                    let projection = g
                        .get("Projection")
                        .ok_or_else(|| err("GSI without Projection"))?;
                    Ok(IndexSpec {
                        name: str_of(g, "IndexName")?.to_owned(),
                        key_schema: pairs(g.get("KeySchema"), "AttributeName", "KeyType")?,
                        projection_type: str_of(projection, "ProjectionType")?.to_owned(),
                        non_key_attributes: projection
                            .get("NonKeyAttributes")
                            .and_then(Value::as_sequence)
                            .map(|s| {
                                s.iter()
                                    .filter_map(Value::as_str)
                                    .map(str::to_owned)
                                    .collect()
                            })
                            .unwrap_or_default(),
                    })
                })
                .collect::<Result<_, DevError>>()?,
        };
        let ttl_attribute = p.get("TimeToLiveSpecification").and_then(|t| {
            (t.get("Enabled").and_then(Value::as_bool) == Some(true))
                .then(|| {
                    t.get("AttributeName")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .flatten()
        });
        tables.push(TableSpec {
            logical_id: id.to_owned(),
            attributes: pairs(
                p.get("AttributeDefinitions"),
                "AttributeName",
                "AttributeType",
            )?,
            key_schema: pairs(p.get("KeySchema"), "AttributeName", "KeyType")?,
            indexes,
            ttl_attribute,
        });
    }
    Ok(tables)
}

fn key_schema(pairs: &[(String, String)]) -> Result<Vec<KeySchemaElement>, DevError> {
    pairs
        .iter()
        .map(|(name, kind)| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(KeyType::from(kind.as_str()))
                .build()
                .map_err(|e| err(e.to_string()))
        })
        .collect()
}

/// Creates `spec` as table `name` (on-demand, like the template) and enables its TTL.
pub async fn create_table(client: &Client, spec: &TableSpec, name: &str) -> Result<(), DevError> {
    let mut req = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .set_key_schema(Some(key_schema(&spec.key_schema)?));
    for (attr, kind) in &spec.attributes {
        req = req.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(attr)
                .attribute_type(ScalarAttributeType::from(kind.as_str()))
                .build()
                .map_err(|e| err(e.to_string()))?,
        );
    }
    for ix in &spec.indexes {
        let projection = Projection::builder()
            .projection_type(ProjectionType::from(ix.projection_type.as_str()))
            .set_non_key_attributes(
                (!ix.non_key_attributes.is_empty()).then(|| ix.non_key_attributes.clone()),
            )
            .build();
        req = req.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(&ix.name)
                .set_key_schema(Some(key_schema(&ix.key_schema)?))
                .projection(projection)
                .build()
                .map_err(|e| err(e.to_string()))?,
        );
    }
    req.send().await.map_err(aws_sdk_dynamodb::Error::from)?;
    if let Some(attr) = &spec.ttl_attribute {
        client
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(attr)
                    .enabled(true)
                    .build()
                    .map_err(|e| err(e.to_string()))?,
            )
            .send()
            .await
            .map_err(aws_sdk_dynamodb::Error::from)?;
    }
    Ok(())
}

/// Names of the two chat tables once created with `prefix`.
#[derive(Debug, Clone)]
pub struct ChatTables {
    pub messages: String,
    pub connections: String,
}

/// Creates every table of the project's template, named `<prefix><LogicalId>`.
pub async fn create_chat_tables(client: &Client, prefix: &str) -> Result<ChatTables, DevError> {
    create_tables(client, &Template::project()?.tables()?, prefix).await
}

/// Creates `specs`, named `<prefix><LogicalId>`; the chat's two tables must be among them.
pub async fn create_tables(
    client: &Client,
    specs: &[TableSpec],
    prefix: &str,
) -> Result<ChatTables, DevError> {
    for id in ["MessagesTable", "ConnectionsTable"] {
        if !specs.iter().any(|s| s.logical_id == id) {
            return Err(err(format!("no AWS::DynamoDB::Table {id}")));
        }
    }
    for spec in specs {
        create_table(client, spec, &format!("{prefix}{}", spec.logical_id)).await?;
    }
    Ok(ChatTables {
        messages: format!("{prefix}MessagesTable"),
        connections: format!("{prefix}ConnectionsTable"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_templates_tables_are_read_with_keys_index_and_ttl() {
        // GIVEN the project's own template
        let specs = Template::project().unwrap().tables().unwrap();
        // THEN both chat tables are there with the layout the adapters rely on
        let by_id = |id: &str| specs.iter().find(|s| s.logical_id == id).unwrap();
        let messages = by_id("MessagesTable");
        assert_eq!(
            messages.key_schema,
            vec![("pk".into(), "HASH".into()), ("sk".into(), "RANGE".into())]
        );
        assert_eq!(
            messages.ttl_attribute.as_deref(),
            Some(shared::adapters::dynamo::MARKER_TTL_ATTRIBUTE),
            "idempotency markers expire"
        );
        let ix = &messages.indexes[0];
        assert_eq!(ix.name, shared::adapters::dynamo::BY_ACTIVITY_INDEX);
        assert_eq!(
            ix.key_schema,
            vec![
                ("inbox".into(), "HASH".into()),
                ("activity".into(), "RANGE".into())
            ]
        );
        let connections = by_id("ConnectionsTable");
        assert_eq!(connections.ttl_attribute.as_deref(), Some("expires_at"));
        assert!(
            connections.indexes.is_empty(),
            "nothing reads an index there"
        );
    }

    #[test]
    fn a_table_without_keys_is_an_error() {
        let yaml = "Resources:\n  T:\n    Type: AWS::DynamoDB::Table\n    Properties: {}\n";
        assert!(Template::parse(yaml).unwrap().tables().is_err());
    }

    /// s3s-fs has no lifecycle rules, bucket policies or public-access settings, so the
    /// template's meaning is checked here: abandoned uploads expire, sent media stay, the bucket
    /// is private and TLS-only, and each function may touch only its own prefixes.
    #[test]
    fn the_media_bucket_expires_unsent_uploads_and_stays_private() {
        let doc = Template::project().unwrap().doc();
        let res = |id: &str| doc["Resources"][id]["Properties"].clone();
        let bucket = res("MediaBucket");
        // GIVEN the lifecycle rules THEN exactly the upload prefix expires, after a day
        let rules = bucket["LifecycleConfiguration"]["Rules"]
            .as_sequence()
            .unwrap();
        let expiring: Vec<_> = rules
            .iter()
            .filter(|r| r.get("ExpirationInDays").is_some())
            .collect();
        assert_eq!(expiring.len(), 1);
        assert_eq!(expiring[0]["Prefix"].as_str(), Some("u/"));
        assert_eq!(expiring[0]["ExpirationInDays"].as_u64(), Some(1));
        assert_eq!(expiring[0]["Status"].as_str(), Some("Enabled"));
        // AND every public access is blocked, objects are encrypted, plain HTTP is denied
        let block = &bucket["PublicAccessBlockConfiguration"];
        for k in [
            "BlockPublicAcls",
            "BlockPublicPolicy",
            "IgnorePublicAcls",
            "RestrictPublicBuckets",
        ] {
            assert_eq!(block[k].as_bool(), Some(true), "{k}");
        }
        assert!(bucket["BucketEncryption"].is_mapping());
        let policy = serde_yaml::to_string(&res("MediaBucketPolicy")).unwrap();
        assert!(policy.contains("aws:SecureTransport") && policy.contains("Deny"));
        // AND the functions' S3 permissions name only their prefixes
        let s3_grants = |f: &str| -> Vec<String> {
            let p = &res(f)["Policies"][0]["Statement"];
            p.as_sequence()
                .unwrap()
                .iter()
                .filter(|s| serde_yaml::to_string(&s["Action"]).unwrap().contains("s3:"))
                .map(|s| serde_yaml::to_string(s).unwrap())
                .collect()
        };
        let default = s3_grants("DefaultFunction").join("\n");
        assert!(!default.contains("DeleteObject") && !default.contains("s3:*"));
        assert!(default.contains("/u/*") && default.contains("/m/*") && default.contains("/t/*"));
        let thumb = s3_grants("ThumbnailFunction").join("\n");
        assert!(thumb.contains("/u/i/*") && thumb.contains("/t/*") && !thumb.contains("/m/*"));
        for f in ["ConnectFunction", "DisconnectFunction"] {
            assert!(s3_grants(f).is_empty(), "{f} needs no S3");
        }
    }
}
