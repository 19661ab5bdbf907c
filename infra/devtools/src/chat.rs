//! The chat on the general local stack (`local-stack`, which knows it only through
//! template.yaml): what the chat's functions get from the stack instead of the template, and
//! the chat's two tables.

use local_stack::app::{self, Supplied};
use local_stack::stack::{Stack, StackOptions};
use local_stack::tables::create_tables;
use local_stack::template::Template;
use local_stack::DevError;
use std::collections::{BTreeMap, HashMap};

/// What the stack supplies instead of resolving the template: `JWT_SECRET_ARN` names a Secrets
/// Manager secret (`!Ref JwtSecret`), which the stack does not emulate, so it is empty and the
/// functions read the signing secret inline from `JWT_SECRET` (`shared::config`).
pub fn supplied() -> Supplied {
    Supplied::from([("JWT_SECRET_ARN".to_string(), String::new())])
}

/// The stack's options for the chat, signing tokens with `jwt_secret`.
pub fn stack_options(jwt_secret: &str) -> StackOptions {
    StackOptions {
        supplied: supplied(),
        env: BTreeMap::from([("JWT_SECRET".to_string(), jwt_secret.to_owned())]),
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
