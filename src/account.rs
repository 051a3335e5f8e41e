//! The account token's server list: which servers the account has, which of them the
//! config's `servers` selects, and each one's own token (the first of its `ApiTokens`),
//! kept as a [`Secret`] and never quoted.

use std::io::Write;

use serde_json::Value;

use crate::client::{Client, Request, Token};
use crate::config::Secret;
use crate::error::Error;
use crate::protocol::{Emitter, Level};

/// One server of the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub id: u64,
    pub name: String,
    /// The first of the server's `ApiTokens` (its `Debug` prints `***`); `None` when the
    /// list shows none (the server is then reported failed, not read with another token).
    pub token: Option<Secret>,
}

impl Server {
    /// `server 1234567 "Acme Production"`: how errors and logs name a server.
    pub fn label(&self) -> String {
        format!("server {} \"{}\"", self.id, self.name)
    }
}

/// Page size of `GET /servers` (no documented maximum; 500 as elsewhere, UNCONFIRMED).
const PAGE: u64 = 500;
/// `count + offset` stays within Postmark's usual 10,000 limit: at most 20 pages.
const MAX_PAGES: u64 = 20;

/// `GET /servers`, every page, with the account token.
pub fn list_servers<W: Write>(client: &Client, out: &mut Emitter<W>) -> Result<Vec<Server>, Error> {
    let mut servers: Vec<Server> = Vec::new();
    for page in 0..MAX_PAGES {
        let offset = page * PAGE;
        let request = Request {
            path: "/servers".into(),
            query: vec![("count", PAGE.to_string()), ("offset", offset.to_string())],
            token: Token::Account,
            server: None,
        };
        let context = format!("listing the account's servers (GET /servers, offset {offset})");
        let mut log_error = None;
        let body = client.get(&request, &context, &mut |m| {
            if let Err(e) = out.log(Level::Warn, &m) {
                log_error.get_or_insert(e);
            }
        });
        if let Some(e) = log_error {
            return Err(e);
        }
        let body = body?;
        // The body lists every server's tokens: it is never quoted in an error.
        let unexpected = |detail: &str| Error::UnexpectedResponse {
            context: context.clone(),
            detail: detail.to_string(),
        };
        let value: Value = serde_json::from_str(&body)
            .map_err(|_| unexpected("the body is not JSON; check 'base_url'"))?;
        let list = value
            .get("Servers")
            .and_then(Value::as_array)
            .ok_or_else(|| unexpected("the body has no \"Servers\" array; check 'base_url'"))?;
        for s in list {
            let id = s.get("ID").and_then(Value::as_u64);
            let name = s.get("Name").and_then(Value::as_str);
            // Postmark lists a server's tokens in `ApiTokens`; the first one is used. A blank
            // or non-string entry is treated as no token.
            let token = s
                .get("ApiTokens")
                .and_then(Value::as_array)
                .and_then(|t| t.first())
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|t| !t.is_empty() && !t.chars().any(char::is_control))
                .map(Secret::new);
            match (id, name) {
                (Some(id), Some(name)) if !servers.iter().any(|k| k.id == id) => {
                    servers.push(Server {
                        id,
                        name: name.to_string(),
                        token,
                    })
                }
                (Some(_), Some(_)) => {}
                _ => {
                    return Err(unexpected(
                        "a server without a numeric \"ID\" and a \"Name\"",
                    ))
                }
            }
        }
        let total = value.get("TotalCount").and_then(Value::as_u64);
        let short = (list.len() as u64) < PAGE;
        if short || total.is_some_and(|t| servers.len() as u64 >= t) {
            return Ok(servers);
        }
    }
    Err(Error::UnexpectedResponse {
        context: "listing the account's servers (GET /servers)".into(),
        detail: format!(
            "more than {} servers; this connector reads at most that many",
            PAGE * MAX_PAGES
        ),
    })
}

/// The servers `wanted` names (by ID or exact name; empty: all). Names that match no server
/// are one config error that lists the account's servers.
pub fn select<'a>(servers: &'a [Server], wanted: &[String]) -> Result<Vec<&'a Server>, Error> {
    if wanted.is_empty() {
        return Ok(servers.iter().collect());
    }
    let mut chosen: Vec<&Server> = Vec::new();
    let mut missing: Vec<&str> = Vec::new();
    for w in wanted {
        let hit = servers
            .iter()
            .find(|s| s.id.to_string() == *w || s.name == *w);
        match hit {
            Some(s) if !chosen.iter().any(|c| c.id == s.id) => chosen.push(s),
            Some(_) => {}
            None => missing.push(w),
        }
    }
    if missing.is_empty() {
        return Ok(chosen);
    }
    let quoted: Vec<String> = missing.iter().map(|m| format!("\"{m}\"")).collect();
    let existing: Vec<String> = servers
        .iter()
        .map(|s| format!("{} \"{}\"", s.id, s.name))
        .collect();
    Err(Error::input(
        "config 'servers'",
        format!(
            "{} {} not a server of this account; its servers are: {}",
            quoted.join(", "),
            if missing.len() == 1 { "is" } else { "are" },
            if existing.is_empty() {
                "none".to_string()
            } else {
                existing.join(", ")
            }
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn servers() -> Vec<Server> {
        vec![
            Server {
                id: 1,
                name: "Prod".into(),
                token: None,
            },
            Server {
                id: 2,
                name: "Staging".into(),
                token: None,
            },
        ]
    }

    #[test]
    fn servers_are_selected_by_id_or_name_and_all_by_default() {
        let all = servers();
        assert_eq!(select(&all, &[]).unwrap().len(), 2);
        let picked = select(&all, &["2".into(), "Prod".into(), "Staging".into()]).unwrap();
        let ids: Vec<u64> = picked.iter().map(|s| s.id).collect();
        assert_eq!(ids, vec![2, 1]);
    }

    #[test]
    fn an_unknown_server_is_named_with_the_servers_that_exist() {
        let all = servers();
        let err = select(&all, &["Prod".into(), "Dev".into(), "9".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"Dev\", \"9\" are not a server"), "{err}");
        assert!(err.contains("1 \"Prod\", 2 \"Staging\""), "{err}");
    }
}
