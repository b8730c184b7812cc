//! DynamoDB backend: a store that needs no VPC, no NAT gateway and no server to run, billed per
//! request. It speaks DynamoDB's JSON protocol over the broker's own HTTPS client, signed with
//! SigV4, instead of going through the AWS SDK.
//!
//! # The table
//!
//! One table (`DYNAMODB_TABLE`), which the SAM template creates; [`DynamoStore::ensure_table`]
//! creates it on a local emulator. Every store key is one item:
//!
//! | Attribute | Type | Holds |
//! |---|---|---|
//! | `pk` | S, partition key | the store key up to its first `:`, which is the deployment's `KEY_PREFIX` (or its first part) |
//! | `sk` | S, sort key | the whole store key |
//! | `generation` | N | records: 1 for the first write, one more for every write after it |
//! | `data` | B | records: the record's bytes (sealed when encryption is on) |
//! | `owner` | S | locks: who holds the lock |
//! | `expires_at_ms` | N | when the item stops counting, in Unix milliseconds; absent: never |
//! | `expires_at` | N | the same in seconds: the table's TTL attribute |
//!
//! ```text
//! aws dynamodb create-table --table-name token-broker --billing-mode PAY_PER_REQUEST \
//!   --attribute-definitions AttributeName=pk,AttributeType=S AttributeName=sk,AttributeType=S \
//!   --key-schema AttributeName=pk,KeyType=HASH AttributeName=sk,KeyType=RANGE
//! aws dynamodb update-time-to-live --table-name token-broker \
//!   --time-to-live-specification Enabled=true,AttributeName=expires_at
//! ```
//!
//! DynamoDB's TTL deletes expired items lazily, up to about two days late, so it is only cleanup:
//! every operation checks `expires_at_ms` itself and treats an expired item as absent.
//!
//! # The store contract, one conditional call per operation
//!
//! "Live" below means: the item exists and `expires_at_ms` is absent or later than now.
//!
//! 1. `load`: `GetItem`, strongly consistent. An expired item loads as absent.
//! 2. `write` expecting generation *g*: `UpdateItem` setting generation *g* + 1 and the data, on
//!    the condition that the item is live at generation *g*. A failed condition means another
//!    writer got there first: `None`, never an error.
//! 3. `write` over anything: `UpdateItem` setting generation to one more than the current one (1
//!    on a new item), on the condition that the item is live or absent. Only an expired item that
//!    TTL has not removed yet fails that; a second call, a `PutItem` of generation 1 on the
//!    condition that it is still expired, replaces it, so a write after expiry starts again at 1
//!    as on the other backends.
//! 4. `try_lock`: `PutItem` of the owner and the lock's expiry, on the condition that no lock is
//!    there or it has expired.
//! 5. `unlock`: `DeleteItem` on the condition that the owner is the caller.
//! 6. `take`: `DeleteItem` returning the old item, on the condition that it is a live record. Of
//!    two callers racing for a one-time login state, one deletes it and gets it; the other's
//!    condition fails, and it gets nothing.
//! 7. `delete`: `DeleteItem` returning the old item, to say whether a live one was there.
//! 8. `keys(prefix)`: `Query` on the prefix's partition with `begins_with(sk, prefix)`, page by
//!    page: no `Scan`, so listing a deployment's connections reads that deployment's own items
//!    and nothing else in the table. Locks and expired items are left out. `records(prefix)` is
//!    the same `Query` with the data in its projection, so `/verify` reads every connection in
//!    one call.
//!
//! # Failures
//!
//! Throttling (`ProvisionedThroughputExceededException`, `ThrottlingException`,
//! `RequestLimitExceeded`), 5xx answers, timeouts and lost connections are retried with jittered
//! backoff until the store timeout is spent, then reported as unavailable (503), like a Redis
//! outage. A missing table or a missing permission is unavailable too, with a log line that names
//! the table and the action. None of these writes anything.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use base64::{Engine, engine::general_purpose::STANDARD};
use reqwest::{Client, StatusCode, Url, header::HeaderMap};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{Map, Value, json};

use super::{Expect, Listed, Store, StoreError, Ttl, Versioned, push_found};
use crate::base::{
    aws::{self, sigv4::Credentials},
    clock::{Clock, SystemClock, unix_millis},
    tls,
};

const SERVICE: &str = "dynamodb";
const CONTENT_TYPE_JSON: &str = "application/x-amz-json-1.0";
/// Answers are a record or a page of keys; a page is at most 1 MB.
const MAX_RESPONSE_BYTES: usize = 2 * 1024 * 1024;
/// The first pause before a retry; each one after doubles, with jitter.
const FIRST_BACKOFF: Duration = Duration::from_millis(25);

/// Where the table is and how to reach it, read once at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamoConfig {
    pub table: String,
    pub region: String,
    /// `AWS_ENDPOINT_URL_DYNAMODB` or `AWS_ENDPOINT_URL`: an emulator, or a VPC endpoint.
    pub endpoint: Option<String>,
    pub credentials: Credentials,
}

#[derive(Clone)]
pub struct DynamoStore {
    inner: Arc<Inner>,
}

struct Inner {
    http: Client,
    url: Url,
    /// The `Host` header as sent, which is signed.
    host: String,
    table: String,
    region: String,
    credentials: Credentials,
    timeout: Duration,
}

/// How one call ended, before the store's contract gives it a meaning.
enum Failure {
    /// The call's condition did not hold: the answer to a conditional operation, not a fault.
    ConditionFailed,
    Store(StoreError),
}

impl DynamoStore {
    /// Does not call DynamoDB: the first operation does. An unreachable table therefore shows as
    /// 503 answers, not as a function that fails to start.
    pub fn new(config: &DynamoConfig, timeout: Duration) -> Result<Self, StoreError> {
        let url = match &config.endpoint {
            Some(endpoint) => Url::parse(endpoint).map_err(|e| StoreError::Protocol(format!("endpoint: {e}")))?,
            None => Url::parse(&format!("https://dynamodb.{}.amazonaws.com/", config.region))
                .map_err(|e| StoreError::Protocol(format!("region: {e}")))?,
        };
        let host = aws::host_header(&url);
        let tls = tls::client_config().map_err(|e| StoreError::Protocol(format!("TLS set-up: {e}")))?;
        let http = aws::client(tls, timeout).map_err(|e| StoreError::Protocol(format!("HTTP client set-up: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                url,
                host,
                table: config.table.clone(),
                region: config.region.clone(),
                credentials: config.credentials.clone(),
                timeout,
            }),
        })
    }

    /// Creates the table with the layout above, and its TTL, unless it exists (an existing table
    /// is left as it is): for a local emulator and the tests. On AWS the SAM template creates it.
    pub async fn ensure_table(&self) -> Result<(), StoreError> {
        let created = self
            .call(
                "CreateTable",
                json!({
                    "TableName": self.inner.table,
                    "BillingMode": "PAY_PER_REQUEST",
                    "AttributeDefinitions": [
                        {"AttributeName": "pk", "AttributeType": "S"},
                        {"AttributeName": "sk", "AttributeType": "S"},
                    ],
                    "KeySchema": [
                        {"AttributeName": "pk", "KeyType": "HASH"},
                        {"AttributeName": "sk", "KeyType": "RANGE"},
                    ],
                }),
            )
            .await;
        match created {
            Ok(_) => {}
            // There already; its TTL is whoever made it's business.
            Err(Failure::ConditionFailed) => return Ok(()),
            Err(Failure::Store(error)) => return Err(error),
        }
        let ttl = self
            .call(
                "UpdateTimeToLive",
                json!({
                    "TableName": self.inner.table,
                    "TimeToLiveSpecification": {"Enabled": true, "AttributeName": "expires_at"},
                }),
            )
            .await;
        ttl.map(drop).map_err(store_error)
    }

    /// One call of the JSON protocol, retried while DynamoDB is throttling, failing or
    /// unreachable, until the store timeout is spent.
    async fn call(&self, action: &'static str, body: Value) -> Result<Value, Failure> {
        let deadline = Instant::now() + self.inner.timeout;
        let body = serde_json::to_vec(&body).expect("a JSON value serializes");
        let mut backoff = FIRST_BACKOFF;
        loop {
            let error = match self.attempt(action, &body).await {
                Ok(answer) => return Ok(answer),
                Err(Attempt::Final(failure)) => return Err(failure),
                Err(Attempt::Transient(error)) => error,
            };
            let pause = jittered(backoff);
            if Instant::now() + pause >= deadline {
                tracing::warn!(table = self.inner.table, action, error, "DynamoDB unavailable");
                return Err(Failure::Store(StoreError::Unavailable(format!(
                    "DynamoDB {action}: {error}"
                ))));
            }
            tracing::debug!(table = self.inner.table, action, error, "DynamoDB call retried");
            tokio::time::sleep(pause).await;
            backoff *= 2;
        }
    }

    async fn attempt(&self, action: &'static str, body: &[u8]) -> Result<Value, Attempt> {
        let inner = &*self.inner;
        let response = inner
            .http
            .post(inner.url.clone())
            .headers(self.signed_headers(action, body)?)
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| Attempt::Transient(transport(&e)))?;
        let status = response.status();
        let answer = read_capped(response).await.map_err(Attempt::Transient)?;
        if status.is_success() {
            return serde_json::from_slice(&answer)
                .map_err(|_| Attempt::Final(Failure::Store(StoreError::Protocol(format!("{action}: not JSON")))));
        }
        Err(self.refusal(action, status, &answer))
    }

    /// What an error answer means. DynamoDB's messages can quote the request's values (a key, a
    /// condition's operands), so only the error's type is kept.
    fn refusal(&self, action: &'static str, status: StatusCode, body: &[u8]) -> Attempt {
        let kind = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|json| json.get("__type")?.as_str().map(str::to_owned))
            .map(|kind| kind.rsplit('#').next().unwrap_or_default().to_owned())
            .unwrap_or_default();
        let table = &self.inner.table;
        match kind.as_str() {
            "ConditionalCheckFailedException" | "ResourceInUseException" => Attempt::Final(Failure::ConditionFailed),
            "ProvisionedThroughputExceededException" | "ThrottlingException" | "RequestLimitExceeded" => {
                Attempt::Transient(format!("throttled ({kind})"))
            }
            _ if status.is_server_error() => Attempt::Transient(format!("HTTP {}", status.as_u16())),
            "ResourceNotFoundException" => {
                tracing::error!(table, action, "the DynamoDB table does not exist (DYNAMODB_TABLE)");
                Attempt::Final(Failure::Store(StoreError::Unavailable(format!(
                    "DynamoDB {action}: table {table} not found"
                ))))
            }
            "AccessDeniedException"
            | "UnrecognizedClientException"
            | "InvalidSignatureException"
            | "ExpiredTokenException"
            | "MissingAuthenticationTokenException" => {
                tracing::error!(
                    table,
                    action,
                    error = kind,
                    "DynamoDB refused the function's credentials or role for this action"
                );
                Attempt::Final(Failure::Store(StoreError::Unavailable(format!(
                    "DynamoDB {action} on {table}: {kind}"
                ))))
            }
            _ => Attempt::Final(Failure::Store(StoreError::Protocol(format!(
                "DynamoDB {action}: HTTP {} {kind}",
                status.as_u16()
            )))),
        }
    }

    fn signed_headers(&self, action: &'static str, body: &[u8]) -> Result<HeaderMap, Attempt> {
        let inner = &*self.inner;
        let target = format!("DynamoDB_20120810.{action}");
        let call = aws::JsonCall {
            host: &inner.host,
            region: &inner.region,
            service: SERVICE,
            content_type: CONTENT_TYPE_JSON,
            target: &target,
        };
        aws::signed_headers(&call, body, &inner.credentials, SystemClock.now()).map_err(|header| {
            Attempt::Final(Failure::Store(StoreError::Protocol(format!(
                "the value for {header} cannot be sent in an HTTP header"
            ))))
        })
    }

    fn key(&self, key: &str) -> Value {
        json!({"pk": {"S": partition(key)}, "sk": {"S": key}})
    }

    fn table(&self) -> &str {
        &self.inner.table
    }
}

enum Attempt {
    /// Worth another try: throttled, a 5xx, a timeout or a lost connection.
    Transient(String),
    Final(Failure),
}

/// The partition of a store key: everything before its first `:`.
fn partition(key: &str) -> &str {
    key.split(':').next().unwrap_or(key)
}

fn transport(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "connection failed".to_owned()
    } else {
        "the answer could not be read".to_owned()
    }
}

async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| transport(&e))? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err("the answer is too large".to_owned());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Somewhere between half of `base` and all of it, so that instances throttled together do not
/// retry together.
fn jittered(base: Duration) -> Duration {
    let mut byte = [0u8; 1];
    let _ = SystemRandom::new().fill(&mut byte);
    base / 2 + base / 2 * u32::from(byte[0]) / 255
}

/// The values an item's expiry is written as, or `None` for no expiry.
fn expiry(ttl: Ttl) -> Option<(u64, u64)> {
    ttl.map(|ttl| {
        let at_ms = unix_millis() + (ttl.as_millis() as u64).max(1);
        (at_ms, at_ms.div_ceil(1000))
    })
}

/// Condition: the item is live (`:now` is the current time in milliseconds).
const LIVE: &str = "(attribute_not_exists(#e) OR #e > :now)";

/// The placeholders expressions use for attribute names: some names (`data`, `owner`) are
/// reserved words in DynamoDB's expressions, so every name goes through one.
const NAMES: [(&str, &str); 7] = [
    ("#pk", "pk"),
    ("#sk", "sk"),
    ("#g", "generation"),
    ("#d", "data"),
    ("#o", "owner"),
    ("#e", "expires_at_ms"),
    ("#t", "expires_at"),
];

/// `call` with the `ExpressionAttributeNames` and `ExpressionAttributeValues` its expressions
/// use, and no others: DynamoDB refuses a call that defines one it does not use.
fn with_placeholders(mut call: Value, values: &[(&str, Value)]) -> Value {
    let text: String = [
        "UpdateExpression",
        "ConditionExpression",
        "KeyConditionExpression",
        "ProjectionExpression",
    ]
    .iter()
    .filter_map(|part| call.get(*part)?.as_str())
    .collect::<Vec<_>>()
    .join(" ");
    let used = |placeholder: &str| {
        text.match_indices(placeholder)
            .any(|(at, _)| !text[at + placeholder.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_'))
    };
    let names: Map<String, Value> = NAMES
        .iter()
        .filter(|(placeholder, _)| used(placeholder))
        .map(|(placeholder, name)| ((*placeholder).to_owned(), json!(name)))
        .collect();
    let values: Map<String, Value> = values
        .iter()
        .filter(|(placeholder, _)| used(placeholder))
        .map(|(placeholder, value)| ((*placeholder).to_owned(), value.clone()))
        .collect();
    if !names.is_empty() {
        call["ExpressionAttributeNames"] = Value::Object(names);
    }
    if !values.is_empty() {
        call["ExpressionAttributeValues"] = Value::Object(values);
    }
    call
}

fn n(value: impl ToString) -> Value {
    json!({"N": value.to_string()})
}

fn number(item: &Map<String, Value>, name: &str) -> Option<u64> {
    item.get(name)?.get("N")?.as_str()?.parse().ok()
}

fn live(item: &Map<String, Value>) -> bool {
    number(item, "expires_at_ms").is_none_or(|at| at > unix_millis())
}

/// A live record in an item, or `None`; an item that is not a record is a protocol error.
fn record(key: &str, item: Option<&Value>) -> Result<Option<Versioned>, StoreError> {
    let Some(item) = item.and_then(Value::as_object).filter(|item| live(item)) else {
        return Ok(None);
    };
    let generation = number(item, "generation");
    let data = item
        .get("data")
        .and_then(|data| data.get("B")?.as_str())
        .and_then(|data| STANDARD.decode(data).ok());
    match (generation, data) {
        (Some(generation), Some(data)) => Ok(Some(Versioned { generation, data })),
        _ => Err(StoreError::Protocol(format!("item {key} is not a record"))),
    }
}

impl Store for DynamoStore {
    async fn load(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let answer = self
            .call(
                "GetItem",
                json!({"TableName": self.table(), "Key": self.key(key), "ConsistentRead": true}),
            )
            .await
            .map_err(store_error)?;
        record(key, answer.get("Item"))
    }

    async fn write(&self, key: &str, expect: Expect, data: &[u8], ttl: Ttl) -> Result<Option<u64>, StoreError> {
        // An unconditional write can meet an expired item and then, between its two calls, a
        // live one written by someone else: it tries again, a bounded number of times.
        for _ in 0..3 {
            match self.update(key, expect, data, ttl).await {
                Ok(answer) => {
                    return answer
                        .get("Attributes")
                        .and_then(Value::as_object)
                        .and_then(|item| number(item, "generation"))
                        .map(Some)
                        .ok_or_else(|| StoreError::Protocol("UpdateItem returned no generation".into()));
                }
                Err(Failure::ConditionFailed) if expect == Expect::Any => {
                    if self.replace_expired(key, data, ttl).await? {
                        return Ok(Some(1));
                    }
                }
                Err(Failure::ConditionFailed) => return Ok(None),
                Err(Failure::Store(error)) => return Err(error),
            }
        }
        Err(StoreError::Unavailable(format!(
            "DynamoDB: the write of {key} kept meeting other writers"
        )))
    }

    async fn try_lock(&self, key: &str, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        let (at_ms, at) = expiry(Some(ttl)).unwrap_or_default();
        let mut item = self.key(key);
        item["owner"] = json!({"S": owner});
        item["expires_at_ms"] = n(at_ms);
        item["expires_at"] = n(at);
        let call = with_placeholders(
            json!({
                "TableName": self.table(),
                "Item": item,
                "ConditionExpression": "attribute_not_exists(#sk) OR #e <= :now",
            }),
            &[(":now", n(unix_millis()))],
        );
        conditional(self.call("PutItem", call).await)
    }

    async fn unlock(&self, key: &str, owner: &str) -> Result<(), StoreError> {
        let call = with_placeholders(
            json!({"TableName": self.table(), "Key": self.key(key), "ConditionExpression": "#o = :owner"}),
            &[(":owner", json!({"S": owner}))],
        );
        conditional(self.call("DeleteItem", call).await).map(drop)
    }

    async fn take(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let call = with_placeholders(
            json!({
                "TableName": self.table(),
                "Key": self.key(key),
                "ConditionExpression": format!("attribute_exists(#g) AND {LIVE}"),
                "ReturnValues": "ALL_OLD",
            }),
            &[(":now", n(unix_millis()))],
        );
        match self.call("DeleteItem", call).await {
            Ok(answer) => record(key, answer.get("Attributes")),
            Err(Failure::ConditionFailed) => Ok(None),
            Err(Failure::Store(error)) => Err(error),
        }
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let answer = self
            .call(
                "DeleteItem",
                json!({"TableName": self.table(), "Key": self.key(key), "ReturnValues": "ALL_OLD"}),
            )
            .await
            .map_err(store_error)?;
        Ok(answer
            .get("Attributes")
            .and_then(Value::as_object)
            .is_some_and(|item| item.contains_key("generation") && live(item)))
    }

    async fn keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut keys = Vec::new();
        self.query(prefix, false, |key, _| keys.push(key.to_owned())).await?;
        Ok(keys)
    }

    /// One `Query` that returns the records themselves: one call however many there are (up
    /// to a 1 MB page each).
    async fn records(&self, prefix: &str) -> Result<Listed, StoreError> {
        let mut records = Vec::new();
        self.query(prefix, true, |key, item| {
            push_found(&mut records, key.to_owned(), record(key, Some(item)))
        })
        .await?;
        Ok(records)
    }
}

impl DynamoStore {
    /// Step 8 of the module documentation: `each` sees every live record under `prefix`, with
    /// its data only when `with_data`.
    async fn query(
        &self,
        prefix: &str,
        with_data: bool,
        mut each: impl FnMut(&str, &Value) + Send,
    ) -> Result<(), StoreError> {
        if !prefix.contains(':') {
            return Err(StoreError::Protocol(
                "DynamoDB lists keys only under a prefix that names its partition (up to a ':')".into(),
            ));
        }
        let projection = if with_data { "#sk, #g, #e, #d" } else { "#sk, #g, #e" };
        let mut start: Option<Value> = None;
        loop {
            let mut query = with_placeholders(
                json!({
                    "TableName": self.table(),
                    "KeyConditionExpression": "#pk = :pk AND begins_with(#sk, :prefix)",
                    "ProjectionExpression": projection,
                    "ConsistentRead": true,
                }),
                &[
                    (":pk", json!({"S": partition(prefix)})),
                    (":prefix", json!({"S": prefix})),
                ],
            );
            if let Some(start) = start.take() {
                query["ExclusiveStartKey"] = start;
            }
            let page = self.call("Query", query).await.map_err(store_error)?;
            for item in page.get("Items").and_then(Value::as_array).into_iter().flatten() {
                let Some(fields) = item.as_object() else { continue };
                if fields.contains_key("generation")
                    && live(fields)
                    && let Some(key) = fields.get("sk").and_then(|sk| sk.get("S")?.as_str())
                {
                    each(key, item);
                }
            }
            match page.get("LastEvaluatedKey") {
                Some(next) if !next.is_null() => start = Some(next.clone()),
                _ => return Ok(()),
            }
        }
    }

    /// Writes the record as the module documentation's steps 2 and 3 say.
    async fn update(&self, key: &str, expect: Expect, data: &[u8], ttl: Ttl) -> Result<Value, Failure> {
        let (generation, condition) = match expect {
            Expect::Generation(_) => ("#g = :next", format!("#g = :expected AND {LIVE}")),
            Expect::Any => (
                "#g = if_not_exists(#g, :zero) + :one",
                format!("attribute_not_exists(#sk) OR {LIVE}"),
            ),
        };
        let expires = expiry(ttl);
        let update = match expires {
            Some(_) => format!("SET {generation}, #d = :data, #e = :exp_ms, #t = :exp_s"),
            None => format!("SET {generation}, #d = :data REMOVE #e, #t"),
        };
        let expected = match expect {
            Expect::Generation(expected) => expected,
            Expect::Any => 0,
        };
        let (exp_ms, exp_s) = expires.unwrap_or_default();
        let call = with_placeholders(
            json!({
                "TableName": self.table(),
                "Key": self.key(key),
                "UpdateExpression": update,
                "ConditionExpression": condition,
                "ReturnValues": "UPDATED_NEW",
            }),
            &[
                (":now", n(unix_millis())),
                (":data", json!({"B": STANDARD.encode(data)})),
                (":expected", n(expected)),
                (":next", n(expected + 1)),
                (":zero", n(0)),
                (":one", n(1)),
                (":exp_ms", n(exp_ms)),
                (":exp_s", n(exp_s)),
            ],
        );
        self.call("UpdateItem", call).await
    }

    /// The second step of an unconditional write (see the module documentation): the item is
    /// there but expired, so it is replaced by generation 1, if it is still expired. False: a
    /// live record was written in between.
    async fn replace_expired(&self, key: &str, data: &[u8], ttl: Ttl) -> Result<bool, StoreError> {
        let mut item = self.key(key);
        item["generation"] = n(1);
        item["data"] = json!({"B": STANDARD.encode(data)});
        if let Some((at_ms, at)) = expiry(ttl) {
            item["expires_at_ms"] = n(at_ms);
            item["expires_at"] = n(at);
        }
        let call = with_placeholders(
            json!({"TableName": self.table(), "Item": item, "ConditionExpression": "#e <= :now"}),
            &[(":now", n(unix_millis()))],
        );
        conditional(self.call("PutItem", call).await)
    }
}

fn store_error(failure: Failure) -> StoreError {
    match failure {
        Failure::Store(error) => error,
        Failure::ConditionFailed => StoreError::Protocol("an unconditional call failed its condition".into()),
    }
}

/// Whether a conditional call's condition held.
fn conditional(answer: Result<Value, Failure>) -> Result<bool, StoreError> {
    match answer {
        Ok(_) => Ok(true),
        Err(Failure::ConditionFailed) => Ok(false),
        Err(Failure::Store(error)) => Err(error),
    }
}

impl std::fmt::Debug for DynamoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DynamoStore({} in {})", self.inner.table, self.inner.region)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_partitioned_by_its_first_segment() {
        assert_eq!(partition("token-broker:conn:lab-2:tokens"), "token-broker");
        assert_eq!(partition("acme:prod:conn:x:tokens"), "acme");
        assert_eq!(partition("plain"), "plain");
    }

    #[test]
    fn backoff_is_jittered_within_half_and_all_of_it() {
        for _ in 0..100 {
            let pause = jittered(Duration::from_millis(100));
            assert!(
                (Duration::from_millis(50)..=Duration::from_millis(100)).contains(&pause),
                "{pause:?}"
            );
        }
    }
}
