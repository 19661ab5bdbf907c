//! The template's DynamoDB tables, created on a local endpoint as the template declares them
//! (keys, indexes, TTL, stream).

use crate::app::TableSpec;
use crate::resolve::err;
use crate::DevError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType,
    TimeToLiveSpecification,
};
use aws_sdk_dynamodb::Client;
use std::collections::BTreeMap;

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
    if let Some(view) = &spec.stream_view_type {
        req = req.stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::from(view.as_str()))
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

/// Creates `specs`, each named `<prefix><name>`. Returns logical id → the name created.
pub async fn create_tables(
    client: &Client,
    specs: &[TableSpec],
    prefix: &str,
) -> Result<BTreeMap<String, String>, DevError> {
    let mut names = BTreeMap::new();
    for spec in specs {
        let name = format!("{prefix}{}", spec.name);
        create_table(client, spec, &name).await?;
        names.insert(spec.logical_id.clone(), name);
    }
    Ok(names)
}
