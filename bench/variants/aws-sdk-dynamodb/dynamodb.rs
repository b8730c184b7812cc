//! DynamoDB backend on the official AWS SDK (`aws-sdk-dynamodb`): the alternative measured by
//! `make bench BENCH_VARIANTS=aws-sdk-dynamodb` against the broker's own client, which speaks
//! DynamoDB's JSON protocol over reqwest, signed by `sigv4.rs`. `scripts/bench.sh` swaps this file
//! in for the module file of the same name in a copy of the crate. The public surface, the table
//! and the store contract are the broker's; only the way to DynamoDB differs.
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
//!    page: no `Scan`. Locks and expired items are left out.
//!
//! # What the SDK does in place of the broker's client
//!
//! - Signing, the JSON, endpoints and retries are the SDK's. Credentials are the environment's,
//!   given to the SDK as they are (no `aws-config`, no credential chain), as are the region and
//!   `AWS_ENDPOINT_URL_DYNAMODB`.
//! - Retries: the SDK's standard strategy (throttling, 5xx, timeouts and lost connections;
//!   exponential backoff with full jitter from [`FIRST_BACKOFF`]), with attempts enough that the
//!   store timeout, set as the SDK's operation timeout, is what ends them. Then the call is
//!   unavailable (503), like a Redis outage; so are a missing table and a refused credential,
//!   with a log line that names the table and the action.
//! - HTTP: the SDK's hyper 1 client on rustls with ring and the bundled roots, as the broker's own
//!   TLS is. Its trust store takes PEM, so the roots go in as PEM and are parsed once per cold
//!   start. The SDK reads an answer whole, without the broker's 2 MB cap.
//! - The early connection goes through the same connector the SDK's calls use, so that they find
//!   it in the pool.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use aws_sdk_dynamodb::{
    Client,
    config::{BehaviorVersion, Credentials as SdkCredentials, Region, retry::RetryConfig, timeout::TimeoutConfig},
    error::{ProvideErrorMetadata, SdkError},
    primitives::Blob,
    types::{
        AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ReturnValue, ScalarAttributeType,
        TimeToLiveSpecification,
    },
};
use aws_smithy_http_client::{
    Connector,
    tls::{Provider, TlsContext, TrustStore, rustls_provider::CryptoMode},
};
use aws_smithy_runtime_api::client::{
    http::{HttpConnector, HttpConnectorSettings, SharedHttpConnector, http_client_fn},
    orchestrator::HttpRequest,
};
use aws_smithy_types::byte_stream::ByteStream;
use base64::{Engine, engine::general_purpose::STANDARD};
use reqwest::Url;

use super::{Expect, Store, StoreError, Ttl, Versioned};
use crate::base::{aws::sigv4::Credentials, clock::unix_millis, tls};

/// The first pause before a retry; the SDK doubles it for each one after, with jitter.
const FIRST_BACKOFF: Duration = Duration::from_millis(25);
/// More attempts than fit in any store timeout (1–60 s) at that backoff: the timeout decides.
const MAX_ATTEMPTS: u32 = 10;

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
    client: Client,
    /// The connector behind `client`, for the early connection.
    connector: SharedHttpConnector,
    /// Where the early connection goes: the endpoint the SDK's calls go to.
    url: Url,
    table: String,
    region: String,
    /// The connection opened ahead of the first call ([`DynamoStore::connect_early`]) while it
    /// is still being opened: the first call waits for it instead of opening a second one.
    opening: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// How one call ended, before the store's contract gives it a meaning.
enum Failure {
    /// The call's condition did not hold: the answer to a conditional operation, not a fault.
    ConditionFailed,
    Store(StoreError),
}

type Item = HashMap<String, AttributeValue>;

impl DynamoStore {
    /// Does not call DynamoDB: the first operation does. An unreachable table therefore shows as
    /// 503 answers, not as a function that fails to start.
    pub fn new(config: &DynamoConfig, timeout: Duration) -> Result<Self, StoreError> {
        let url = match &config.endpoint {
            Some(endpoint) => Url::parse(endpoint).map_err(|e| StoreError::Protocol(format!("endpoint: {e}")))?,
            None => Url::parse(&format!("https://dynamodb.{}.amazonaws.com/", config.region))
                .map_err(|e| StoreError::Protocol(format!("region: {e}")))?,
        };
        // Ring as the process-wide provider, as the broker's own client makes it: whatever else
        // builds a rustls configuration from the defaults finds it.
        tls::install_default_provider();
        let tls_context = TlsContext::builder()
            .with_trust_store(bundled_roots())
            .build()
            .map_err(|e| StoreError::Protocol(format!("TLS set-up: {e}")))?;
        // Built here rather than by the SDK on its first call, so that the early connection and
        // the calls share one pool; the SDK's own timeouts for the connector are the same ones.
        let connector = SharedHttpConnector::new(
            Connector::builder()
                .connector_settings(
                    HttpConnectorSettings::builder()
                        .connect_timeout(timeout)
                        .read_timeout(timeout)
                        .build(),
                )
                .tls_provider(Provider::Rustls(CryptoMode::Ring))
                .tls_context(tls_context)
                .build(),
        );
        let for_sdk = connector.clone();
        let credentials = &config.credentials;
        let mut sdk = aws_sdk_dynamodb::Config::builder()
            // Pinned, so that a new SDK release does not change retries or timeouts unseen.
            .behavior_version(BehaviorVersion::v2026_11_17())
            .region(Region::new(config.region.clone()))
            .credentials_provider(SdkCredentials::new(
                credentials.access_key_id.clone(),
                credentials.secret_access_key.expose(),
                credentials
                    .session_token
                    .as_ref()
                    .map(|token| token.expose().to_owned()),
                None,
                "environment",
            ))
            .http_client(http_client_fn(move |_, _| for_sdk.clone()))
            .retry_config(
                RetryConfig::standard()
                    .with_initial_backoff(FIRST_BACKOFF)
                    .with_max_attempts(MAX_ATTEMPTS),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(timeout)
                    .operation_timeout(timeout)
                    .build(),
            );
        if let Some(endpoint) = &config.endpoint {
            sdk = sdk.endpoint_url(endpoint);
        }
        Ok(Self {
            inner: Arc::new(Inner {
                client: Client::from_conf(sdk.build()),
                connector,
                url,
                table: config.table.clone(),
                region: config.region.clone(),
                opening: Mutex::new(None),
            }),
        })
    }

    /// Creates the table with the layout above, and its TTL, unless it exists (an existing table
    /// is left as it is): for a local emulator and the tests. On AWS the SAM template creates it.
    pub async fn ensure_table(&self) -> Result<(), StoreError> {
        self.opened().await;
        let built = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Protocol(format!("CreateTable: {e}"));
        let attribute = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(built)
        };
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .map_err(built)
        };
        let created = self
            .inner
            .client
            .create_table()
            .table_name(self.table())
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attribute("pk")?)
            .attribute_definitions(attribute("sk")?)
            .key_schema(key("pk", KeyType::Hash)?)
            .key_schema(key("sk", KeyType::Range)?)
            .send()
            .await
            .map_err(|e| self.failure("CreateTable", e));
        match created {
            Ok(_) => {}
            // There already; its TTL is whoever made it's business.
            Err(Failure::ConditionFailed) => return Ok(()),
            Err(Failure::Store(error)) => return Err(error),
        }
        let ttl = TimeToLiveSpecification::builder()
            .enabled(true)
            .attribute_name("expires_at")
            .build()
            .map_err(|e| StoreError::Protocol(format!("UpdateTimeToLive: {e}")))?;
        self.inner
            .client
            .update_time_to_live()
            .table_name(self.table())
            .time_to_live_specification(ttl)
            .send()
            .await
            .map(drop)
            .map_err(|e| store_error(self.failure("UpdateTimeToLive", e)))
    }

    /// Opens the connection in the background, so that a cold start's TCP and TLS handshakes
    /// overlap with the rest of start-up and the wait for the first event instead of following
    /// them. The SDK has no call for that, so it sends an unsigned `GET /` through the SDK's
    /// connector, which is no action: it reads and changes nothing whatever the endpoint answers,
    /// needs no permission, and costs nothing. The answer is read to its end so that the
    /// connection goes back to the pool. A failure changes nothing: the first call connects again.
    pub fn connect_early(&self) {
        let inner = self.inner.clone();
        let opening = tokio::spawn(async move {
            let opened = async {
                let request = HttpRequest::get(inner.url.as_str()).map_err(|_| "the endpoint is not a URI")?;
                let response = inner.connector.call(request).await.map_err(|e| {
                    if e.is_timeout() {
                        "timed out"
                    } else if e.is_io() {
                        "connection failed"
                    } else {
                        "the request could not be sent"
                    }
                })?;
                ByteStream::new(response.into_body())
                    .collect()
                    .await
                    .map_err(|_| "the answer could not be read")?;
                Ok::<_, &str>(())
            };
            if let Err(error) = opened.await {
                tracing::debug!(error, "early connect to DynamoDB failed; the first call retries");
            }
        });
        *self.inner.opening.lock().unwrap_or_else(|e| e.into_inner()) = Some(opening);
    }

    /// Waits for the early connection, if it is still being opened.
    async fn opened(&self) {
        let opening = self.inner.opening.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(opening) = opening {
            let _ = opening.await;
        }
    }

    /// What a failed call means, once the SDK has retried what it retries. DynamoDB's messages
    /// can quote the request's values (a key, a condition's operands), so only the error's code
    /// is kept.
    fn failure<E>(&self, action: &'static str, error: SdkError<E>) -> Failure
    where
        E: ProvideErrorMetadata,
    {
        let table = self.table();
        let unavailable = |cause: String| {
            tracing::warn!(table, action, error = cause, "DynamoDB unavailable");
            Failure::Store(StoreError::Unavailable(format!("DynamoDB {action}: {cause}")))
        };
        let service = match &error {
            SdkError::ServiceError(service) => service,
            SdkError::TimeoutError(_) => return unavailable("timed out".to_owned()),
            SdkError::DispatchFailure(failure) if failure.is_timeout() => return unavailable("timed out".to_owned()),
            SdkError::DispatchFailure(failure) if failure.is_io() => {
                return unavailable("connection failed".to_owned());
            }
            SdkError::DispatchFailure(_) => return unavailable("the request could not be sent".to_owned()),
            // The answer's body broke off: the SDK reads it whole before it parses it.
            SdkError::ResponseError(_) => return unavailable("the answer could not be read".to_owned()),
            _ => {
                return Failure::Store(StoreError::Protocol(format!(
                    "DynamoDB {action}: the request could not be built"
                )));
            }
        };
        let status = service.raw().status();
        let kind = service.err().code().unwrap_or_default();
        match kind {
            "ConditionalCheckFailedException" | "ResourceInUseException" => Failure::ConditionFailed,
            "ProvisionedThroughputExceededException" | "ThrottlingException" | "RequestLimitExceeded" => {
                unavailable(format!("throttled ({kind})"))
            }
            _ if status.is_server_error() => unavailable(format!("HTTP {}", status.as_u16())),
            "ResourceNotFoundException" => {
                tracing::error!(table, action, "the DynamoDB table does not exist (DYNAMODB_TABLE)");
                Failure::Store(StoreError::Unavailable(format!(
                    "DynamoDB {action}: table {table} not found"
                )))
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
                Failure::Store(StoreError::Unavailable(format!("DynamoDB {action} on {table}: {kind}")))
            }
            _ => Failure::Store(StoreError::Protocol(format!(
                "DynamoDB {action}: HTTP {} {kind}",
                status.as_u16()
            ))),
        }
    }

    fn table(&self) -> &str {
        &self.inner.table
    }
}

/// The roots the broker's other TLS trusts (`webpki-roots`), as the PEM the SDK's trust store
/// takes; not the OS certificate store, whose loading costs milliseconds of a cold start.
fn bundled_roots() -> TrustStore {
    let mut roots = TrustStore::empty();
    for root in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
        roots.add_pem_certificate(pem(root));
    }
    roots
}

/// A DER certificate as PEM, on one line: the SDK's parser takes a line of any length.
fn pem(der: &[u8]) -> String {
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        STANDARD.encode(der)
    )
}

/// The partition of a store key: everything before its first `:`.
fn partition(key: &str) -> &str {
    key.split(':').next().unwrap_or(key)
}

fn key(key: &str) -> Item {
    HashMap::from([("pk".to_owned(), s(partition(key))), ("sk".to_owned(), s(key))])
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
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

/// The `ExpressionAttributeNames` and `ExpressionAttributeValues` of a call with `expressions`:
/// those they use and no others, as DynamoDB refuses a call that defines one it does not use;
/// `None` rather than an empty map, which it refuses too.
struct Placeholders {
    names: Option<HashMap<String, String>>,
    values: Option<Item>,
}

impl Placeholders {
    fn of(expressions: &[&str], values: Vec<(&str, AttributeValue)>) -> Self {
        let text = expressions.join(" ");
        let used = |placeholder: &str| {
            text.match_indices(placeholder).any(|(at, _)| {
                !text[at + placeholder.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            })
        };
        let names: HashMap<String, String> = NAMES
            .iter()
            .filter(|(placeholder, _)| used(placeholder))
            .map(|(placeholder, name)| ((*placeholder).to_owned(), (*name).to_owned()))
            .collect();
        let values: Item = values
            .into_iter()
            .filter(|(placeholder, _)| used(placeholder))
            .map(|(placeholder, value)| (placeholder.to_owned(), value))
            .collect();
        Self {
            names: (!names.is_empty()).then_some(names),
            values: (!values.is_empty()).then_some(values),
        }
    }
}

fn number(item: &Item, name: &str) -> Option<u64> {
    item.get(name)?.as_n().ok()?.parse().ok()
}

fn live(item: &Item) -> bool {
    number(item, "expires_at_ms").is_none_or(|at| at > unix_millis())
}

/// A live record in an item, or `None`; an item that is not a record is a protocol error.
fn record(key: &str, item: Option<&Item>) -> Result<Option<Versioned>, StoreError> {
    let Some(item) = item.filter(|item| live(item)) else {
        return Ok(None);
    };
    let generation = number(item, "generation");
    let data = item.get("data").and_then(|data| data.as_b().ok());
    match (generation, data) {
        (Some(generation), Some(data)) => Ok(Some(Versioned {
            generation,
            data: data.as_ref().to_vec(),
        })),
        _ => Err(StoreError::Protocol(format!("item {key} is not a record"))),
    }
}

impl Store for DynamoStore {
    async fn load(&self, key_: &str) -> Result<Option<Versioned>, StoreError> {
        self.opened().await;
        let answer = self
            .inner
            .client
            .get_item()
            .table_name(self.table())
            .set_key(Some(key(key_)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error(self.failure("GetItem", e)))?;
        record(key_, answer.item())
    }

    async fn write(&self, key: &str, expect: Expect, data: &[u8], ttl: Ttl) -> Result<Option<u64>, StoreError> {
        self.opened().await;
        // An unconditional write can meet an expired item and then, between its two calls, a
        // live one written by someone else: it tries again, a bounded number of times.
        for _ in 0..3 {
            match self.update(key, expect, data, ttl).await {
                Ok(generation) => return Ok(Some(generation)),
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

    async fn try_lock(&self, key_: &str, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        self.opened().await;
        let (at_ms, at) = expiry(Some(ttl)).unwrap_or_default();
        let mut item = key(key_);
        item.insert("owner".to_owned(), s(owner));
        item.insert("expires_at_ms".to_owned(), n(at_ms));
        item.insert("expires_at".to_owned(), n(at));
        let condition = "attribute_not_exists(#sk) OR #e <= :now";
        let placeholders = Placeholders::of(&[condition], vec![(":now", n(unix_millis()))]);
        let answer = self
            .inner
            .client
            .put_item()
            .table_name(self.table())
            .set_item(Some(item))
            .condition_expression(condition)
            .set_expression_attribute_names(placeholders.names)
            .set_expression_attribute_values(placeholders.values)
            .send()
            .await
            .map_err(|e| self.failure("PutItem", e));
        conditional(answer)
    }

    async fn unlock(&self, key_: &str, owner: &str) -> Result<(), StoreError> {
        self.opened().await;
        let condition = "#o = :owner";
        let placeholders = Placeholders::of(&[condition], vec![(":owner", s(owner))]);
        let answer = self
            .inner
            .client
            .delete_item()
            .table_name(self.table())
            .set_key(Some(key(key_)))
            .condition_expression(condition)
            .set_expression_attribute_names(placeholders.names)
            .set_expression_attribute_values(placeholders.values)
            .send()
            .await
            .map_err(|e| self.failure("DeleteItem", e));
        conditional(answer).map(drop)
    }

    async fn take(&self, key_: &str) -> Result<Option<Versioned>, StoreError> {
        self.opened().await;
        let condition = format!("attribute_exists(#g) AND {LIVE}");
        let placeholders = Placeholders::of(&[&condition], vec![(":now", n(unix_millis()))]);
        let answer = self
            .inner
            .client
            .delete_item()
            .table_name(self.table())
            .set_key(Some(key(key_)))
            .condition_expression(condition)
            .set_expression_attribute_names(placeholders.names)
            .set_expression_attribute_values(placeholders.values)
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        match answer {
            Ok(answer) => record(key_, answer.attributes()),
            Err(error) => match self.failure("DeleteItem", error) {
                Failure::ConditionFailed => Ok(None),
                Failure::Store(error) => Err(error),
            },
        }
    }

    async fn delete(&self, key_: &str) -> Result<bool, StoreError> {
        self.opened().await;
        let answer = self
            .inner
            .client
            .delete_item()
            .table_name(self.table())
            .set_key(Some(key(key_)))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| store_error(self.failure("DeleteItem", e)))?;
        Ok(answer
            .attributes()
            .is_some_and(|item| item.contains_key("generation") && live(item)))
    }

    async fn keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        if !prefix.contains(':') {
            return Err(StoreError::Protocol(
                "DynamoDB lists keys only under a prefix that names its partition (up to a ':')".into(),
            ));
        }
        self.opened().await;
        let condition = "#pk = :pk AND begins_with(#sk, :prefix)";
        let projection = "#sk, #g, #e";
        let mut keys = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let placeholders = Placeholders::of(
                &[condition, projection],
                vec![(":pk", s(partition(prefix))), (":prefix", s(prefix))],
            );
            let page = self
                .inner
                .client
                .query()
                .table_name(self.table())
                .key_condition_expression(condition)
                .projection_expression(projection)
                .set_expression_attribute_names(placeholders.names)
                .set_expression_attribute_values(placeholders.values)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| store_error(self.failure("Query", e)))?;
            for item in page.items() {
                if item.contains_key("generation")
                    && live(item)
                    && let Some(key) = item.get("sk").and_then(|sk| sk.as_s().ok())
                {
                    keys.push(key.clone());
                }
            }
            match page.last_evaluated_key {
                Some(next) if !next.is_empty() => start = Some(next),
                _ => return Ok(keys),
            }
        }
    }
}

impl DynamoStore {
    /// Writes the record as the module documentation's steps 2 and 3 say; the new generation.
    async fn update(&self, key_: &str, expect: Expect, data: &[u8], ttl: Ttl) -> Result<u64, Failure> {
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
        let placeholders = Placeholders::of(
            &[&update, &condition],
            vec![
                (":now", n(unix_millis())),
                (":data", AttributeValue::B(Blob::new(data))),
                (":expected", n(expected)),
                (":next", n(expected + 1)),
                (":zero", n(0)),
                (":one", n(1)),
                (":exp_ms", n(exp_ms)),
                (":exp_s", n(exp_s)),
            ],
        );
        let answer = self
            .inner
            .client
            .update_item()
            .table_name(self.table())
            .set_key(Some(key(key_)))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(placeholders.names)
            .set_expression_attribute_values(placeholders.values)
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(|e| self.failure("UpdateItem", e))?;
        answer
            .attributes()
            .and_then(|item| number(item, "generation"))
            .ok_or_else(|| Failure::Store(StoreError::Protocol("UpdateItem returned no generation".into())))
    }

    /// The second step of an unconditional write (see the module documentation): the item is
    /// there but expired, so it is replaced by generation 1, if it is still expired. False: a
    /// live record was written in between.
    async fn replace_expired(&self, key_: &str, data: &[u8], ttl: Ttl) -> Result<bool, StoreError> {
        let mut item = key(key_);
        item.insert("generation".to_owned(), n(1));
        item.insert("data".to_owned(), AttributeValue::B(Blob::new(data)));
        if let Some((at_ms, at)) = expiry(ttl) {
            item.insert("expires_at_ms".to_owned(), n(at_ms));
            item.insert("expires_at".to_owned(), n(at));
        }
        let condition = "#e <= :now";
        let placeholders = Placeholders::of(&[condition], vec![(":now", n(unix_millis()))]);
        let answer = self
            .inner
            .client
            .put_item()
            .table_name(self.table())
            .set_item(Some(item))
            .condition_expression(condition)
            .set_expression_attribute_names(placeholders.names)
            .set_expression_attribute_values(placeholders.values)
            .send()
            .await
            .map_err(|e| self.failure("PutItem", e));
        conditional(answer)
    }
}

fn store_error(failure: Failure) -> StoreError {
    match failure {
        Failure::Store(error) => error,
        Failure::ConditionFailed => StoreError::Protocol("an unconditional call failed its condition".into()),
    }
}

/// Whether a conditional call's condition held.
fn conditional<T>(answer: Result<T, Failure>) -> Result<bool, StoreError> {
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
    fn only_the_placeholders_an_expression_uses_are_defined() {
        let placeholders = Placeholders::of(
            &["#g = :expected AND (attribute_not_exists(#e) OR #e > :now)"],
            vec![(":now", n(1)), (":expected", n(2)), (":exp", n(3)), (":exp_ms", n(4))],
        );
        let mut names: Vec<_> = placeholders.names.unwrap().into_keys().collect();
        names.sort();
        assert_eq!(names, ["#e", "#g"]);
        let mut values: Vec<_> = placeholders.values.unwrap().into_keys().collect();
        values.sort();
        // `:exp` only begins `:expected`: a placeholder counts when it is there whole.
        assert_eq!(values, [":expected", ":now"]);
        let none = Placeholders::of(&["attribute_exists(pk)"], vec![(":now", n(1))]);
        assert!(none.names.is_none() && none.values.is_none());
    }

    #[test]
    fn the_bundled_roots_go_in_as_pem_the_sdk_parses() {
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        for root in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
            let parsed = CertificateDer::pem_slice_iter(pem(root).as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            assert!(parsed.len() == 1 && parsed[0] == *root);
        }
    }
}
