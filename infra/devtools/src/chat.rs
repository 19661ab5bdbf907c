//! The chat on the general local stack (`local-stack`, which knows it only through
//! template.yaml): what the chat's functions get from the stack instead of the template, and
//! the chat's two tables.

use local_stack::app::{self, Supplied};
use local_stack::stack::{Stack, StackOptions};
use local_stack::tables::create_tables;
use local_stack::template::Template;
use local_stack::DevError;
use std::collections::{BTreeMap, HashMap};

/// What the stack supplies instead of resolving the template: `JWT_SECRET_ARN` and
/// `MEDIA_KEY_SECRET_ARN` name Secrets Manager secrets (`!Ref JwtSecret`, `!Ref
/// MediaKeySecret`), which the stack does not emulate, so they are empty and the functions read
/// the secrets inline from `JWT_SECRET` and `MEDIA_KEY_SECRET` (`shared::config`).
pub fn supplied() -> Supplied {
    Supplied::from([
        ("JWT_SECRET_ARN".to_string(), String::new()),
        ("MEDIA_KEY_SECRET_ARN".to_string(), String::new()),
    ])
}

/// The media owner key of a stack made with [`stack_options`] (tests derive owner segments
/// with it; `make dev` replaces it with a random one).
pub const LOCAL_MEDIA_KEY: &str = "local-media-owner-key";

/// The stack's options for the chat, signing tokens with `jwt_secret`.
pub fn stack_options(jwt_secret: &str) -> StackOptions {
    StackOptions {
        supplied: supplied(),
        env: BTreeMap::from([
            ("JWT_SECRET".to_string(), jwt_secret.to_owned()),
            ("MEDIA_KEY_SECRET".to_string(), LOCAL_MEDIA_KEY.to_owned()),
        ]),
        ..StackOptions::default()
    }
}

/// Names of the chat's two tables.
#[derive(Debug, Clone)]
pub struct ChatTables {
    pub messages: String,
    pub connections: String,
}

impl ChatTables {
    /// From a logical id → name map (as [`Stack::tables`] or `create_tables` give it).
    pub fn of(names: &BTreeMap<String, String>) -> Result<Self, DevError> {
        let name = |id: &str| {
            names
                .get(id)
                .cloned()
                .ok_or_else(|| DevError::Template(format!("no AWS::DynamoDB::Table {id}")))
        };
        Ok(ChatTables {
            messages: name("MessagesTable")?,
            connections: name("ConnectionsTable")?,
        })
    }
}

/// The chat tables of a running stack.
pub fn tables(stack: &Stack) -> ChatTables {
    ChatTables::of(&stack.tables).expect("the template declares both chat tables")
}

/// Creates every table of the project's template, named `<prefix><name>`.
pub async fn create_chat_tables(
    client: &aws_sdk_dynamodb::Client,
    prefix: &str,
) -> Result<ChatTables, DevError> {
    let app = app::read(Template::project()?, &HashMap::new(), &supplied())?;
    ChatTables::of(&create_tables(client, &app.tables, prefix).await?)
}

#[cfg(test)]
mod tests;
