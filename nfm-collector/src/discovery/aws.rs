//! Reading a region's network from the EC2 Query API: credentials (environment or the shared
//! credentials file), SigV4 signing (`aws-sigv4`), a blocking HTTPS client (`ureq`), retries
//! with exponential back-off on throttling and server errors, and `NextToken` pagination.
//!
//! Why not the AWS SDK: nine read-only calls do not justify aws-sdk-ec2 (one of the largest
//! crates there is) plus tokio and hyper in a collector that is otherwise a few threads of
//! blocking code. The signing, the part that is easy to get wrong, is the SDK's own crate.

use super::ec2_xml::{self, Page, XmlError};
use super::Inventory;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// The EC2 API version every request names.
pub const API_VERSION: &str = "2016-11-15";

/// What to import and how to reach the API.
#[derive(Debug, Clone)]
pub struct AwsOptions {
    pub region: String,
    /// A profile of the shared credentials file (`~/.aws/credentials` or
    /// `AWS_SHARED_CREDENTIALS_FILE`); None: the environment, then the `default` profile.
    pub profile: Option<String>,
    /// None: `https://ec2.REGION.amazonaws.com/`.
    pub endpoint_url: Option<String>,
    /// Items asked for per page (`MaxResults`).
    pub page_size: u32,
    /// Attempts per request on throttling, 5xx and connection errors.
    pub attempts: u32,
    /// The first back-off; doubled after every failed attempt.
    pub backoff: Duration,
    pub timeout: Duration,
}

impl AwsOptions {
    pub fn new(region: &str) -> AwsOptions {
        AwsOptions {
            region: region.to_string(),
            profile: None,
            endpoint_url: None,
            page_size: 500,
            attempts: 5,
            backoff: Duration::from_millis(200),
            timeout: Duration::from_secs(20),
        }
    }

    pub fn endpoint(&self) -> String {
        self.endpoint_url
            .clone()
            .unwrap_or_else(|| format!("https://ec2.{}.amazonaws.com/", self.region))
    }
}

/// Why an import failed. The collector keeps its previous topology on any of these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportError {
    Config(String),
    Credentials(String),
    /// An error the API returned (after retries for throttling).
    Api {
        action: String,
        code: String,
        message: String,
    },
    /// The request never got an answer (after retries).
    Transport {
        action: String,
        message: String,
    },
    /// An answer that is not the action's response (cut off, malformed, an endless page loop).
    Response {
        action: String,
        message: String,
    },
    /// The account's data does not make a topology (an unknown AZ id, overlapping CIDRs...).
    Inconsistent(String),
}

impl std::fmt::Display for ImportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImportError::Config(m) => write!(f, "aws import: {m}"),
            ImportError::Credentials(m) => write!(f, "aws import: credentials: {m}"),
            ImportError::Api {
                action,
                code,
                message,
            } => write!(f, "aws import: {action} failed: {code}: {message}"),
            ImportError::Transport { action, message } => {
                write!(
                    f,
                    "aws import: {action}: no answer from the EC2 API: {message}"
                )
            }
            ImportError::Response { action, message } => {
                write!(f, "aws import: {action}: bad response: {message}")
            }
            ImportError::Inconsistent(m) => write!(f, "aws import: {m}"),
        }
    }
}

impl std::error::Error for ImportError {}

/// One HTTP exchange: the form parameters in, status and body out. The real one signs and
/// sends; tests replay recorded responses.
pub trait Transport {
    fn call(&self, params: &[(String, String)]) -> Result<(u16, String), String>;
}

#[derive(Clone)]
pub struct Credentials {
    pub access_key: String,
    pub secret_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, ***)", self.access_key)
    }
}

/// Credentials from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`, or,
/// with a profile (or none in the environment), from the shared credentials file.
pub fn credentials(profile: Option<&str>) -> Result<Credentials, ImportError> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if profile.is_none() {
        if let (Some(a), Some(s)) = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
            return Ok(Credentials {
                access_key: a,
                secret_key: s,
                session_token: env("AWS_SESSION_TOKEN"),
            });
        }
    }
    let name = profile
        .map(str::to_string)
        .or_else(|| env("AWS_PROFILE"))
        .unwrap_or_else(|| "default".into());
    let path =
        match env("AWS_SHARED_CREDENTIALS_FILE") {
            Some(p) => PathBuf::from(p),
            None => match env("HOME") {
                Some(h) => PathBuf::from(h).join(".aws").join("credentials"),
                None => return Err(ImportError::Credentials(
                    "no AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY and no HOME for ~/.aws/credentials"
                        .into(),
                )),
            },
        };
    let text = std::fs::read_to_string(&path).map_err(|e| {
        ImportError::Credentials(format!(
            "no AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY in the environment and {}: {e}",
            path.display()
        ))
    })?;
    profile_credentials(&text, &name)
        .map_err(|m| ImportError::Credentials(format!("{}: {m}", path.display())))
}

/// The `[name]` section of a shared credentials file.
pub fn profile_credentials(text: &str, name: &str) -> Result<Credentials, String> {
    let mut section = None::<String>;
    let (mut a, mut s, mut t) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(h) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = Some(h.trim().to_string());
            continue;
        }
        if section.as_deref() != Some(name) {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim().to_string();
            match k.trim() {
                "aws_access_key_id" => a = Some(v),
                "aws_secret_access_key" => s = Some(v),
                "aws_session_token" => t = Some(v),
                _ => {}
            }
        }
    }
    match (a, s) {
        (Some(access_key), Some(secret_key)) => Ok(Credentials {
            access_key,
            secret_key,
            session_token: t,
        }),
        _ => Err(format!(
            "profile `{name}` has no aws_access_key_id and aws_secret_access_key"
        )),
    }
}

/// The real transport: a SigV4-signed form POST over HTTPS (or HTTP to an emulator).
pub struct HttpTransport {
    endpoint: String,
    region: String,
    creds: Credentials,
    agent: ureq::Agent,
}

impl HttpTransport {
    pub fn new(o: &AwsOptions, creds: Credentials) -> Result<HttpTransport, ImportError> {
        let endpoint = o.endpoint();
        if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
            return Err(ImportError::Config(format!(
                "endpoint `{endpoint}` is not an http(s) URL"
            )));
        }
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(o.timeout))
            .http_status_as_error(false)
            .build()
            .new_agent();
        Ok(HttpTransport {
            endpoint,
            region: o.region.clone(),
            creds,
            agent,
        })
    }

    fn sign(&self, body: &str) -> Result<Vec<(String, String)>, String> {
        use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
        use aws_sigv4::sign::v4;
        let identity = aws_credential_types::Credentials::new(
            &self.creds.access_key,
            &self.creds.secret_key,
            self.creds.session_token.clone(),
            None,
            "nfm-collector",
        )
        .into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("ec2")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| e.to_string())?
            .into();
        let headers = [("content-type", FORM)];
        let req = SignableRequest::new(
            "POST",
            &self.endpoint,
            headers.iter().copied(),
            SignableBody::Bytes(body.as_bytes()),
        )
        .map_err(|e| e.to_string())?;
        let (instructions, _) = sign(req, &params).map_err(|e| e.to_string())?.into_parts();
        Ok(instructions
            .headers()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }
}

const FORM: &str = "application/x-www-form-urlencoded; charset=utf-8";

impl Transport for HttpTransport {
    fn call(&self, params: &[(String, String)]) -> Result<(u16, String), String> {
        let body = form(params);
        let mut req = self.agent.post(&self.endpoint).header("content-type", FORM);
        for (k, v) in self.sign(&body)? {
            req = req.header(k.as_str(), v.as_str());
        }
        let mut resp = req.send(body.as_str()).map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .map_err(|e| format!("reading the response: {e}"))?;
        Ok((status, text))
    }
}

/// `application/x-www-form-urlencoded` with RFC 3986 escaping (what SigV4 canonicalizes).
fn form(params: &[(String, String)]) -> String {
    use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
    const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    params
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                utf8_percent_encode(k, UNRESERVED),
                utf8_percent_encode(v, UNRESERVED)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Error codes that mean "slow down and try again".
fn retryable(code: &str) -> bool {
    matches!(
        code,
        "Throttling"
            | "ThrottlingException"
            | "RequestLimitExceeded"
            | "RequestThrottled"
            | "TooManyRequestsException"
            | "InternalError"
            | "InternalFailure"
            | "ServiceUnavailable"
            | "Unavailable"
    )
}

/// Calls the API page by page, each page through the retry loop.
pub struct Client<'t> {
    transport: &'t dyn Transport,
    opts: AwsOptions,
    /// Back-off waits (a test hook: tests count them instead of sleeping).
    sleep: fn(Duration),
    pub retries: std::cell::Cell<u32>,
    /// Set when the collector stops: no further attempt, the back-off ends early.
    stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

/// Pages at most per action: a loop that never ends is an error, not a hang.
const MAX_PAGES: usize = 10_000;

impl<'t> Client<'t> {
    pub fn new(transport: &'t dyn Transport, opts: AwsOptions) -> Client<'t> {
        Client {
            transport,
            opts,
            sleep: std::thread::sleep,
            retries: std::cell::Cell::new(0),
            stop: None,
        }
    }

    /// Gives up (as a transport error) once `stop` is set, also during a back-off.
    pub fn with_stop(mut self, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> Self {
        self.stop = Some(stop);
        self
    }

    fn stopped(&self) -> bool {
        self.stop
            .as_ref()
            .is_some_and(|s| s.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// The back-off, in slices of at most 100 ms so that a stop ends it.
    fn wait(&self, d: Duration) {
        let mut left = d;
        while !left.is_zero() && !self.stopped() {
            let slice = left.min(Duration::from_millis(100));
            (self.sleep)(slice);
            left -= slice;
        }
    }

    /// A client whose back-off does not wait (tests).
    pub fn without_waiting(mut self) -> Self {
        self.sleep = |_| {};
        self
    }

    /// One request with retries; the body of a 200 answer.
    fn request(&self, action: &str, extra: &[(String, String)]) -> Result<String, ImportError> {
        let mut params = vec![
            ("Action".to_string(), action.to_string()),
            ("Version".to_string(), API_VERSION.to_string()),
        ];
        params.extend_from_slice(extra);
        let mut wait = self.opts.backoff;
        let attempts = self.opts.attempts.max(1);
        for attempt in 1..=attempts {
            if attempt > 1 && self.stopped() {
                return Err(ImportError::Transport {
                    action: action.into(),
                    message: "the collector is stopping".into(),
                });
            }
            let last = attempt == attempts;
            let (retry, err) = match self.transport.call(&params) {
                Ok((200, body)) => return Ok(body),
                Ok((status, body)) => {
                    let (code, message) = ec2_xml::api_error(&body).unwrap_or_else(|| {
                        (
                            format!("HTTP{status}"),
                            body.chars().take(200).collect::<String>(),
                        )
                    });
                    let retry = status >= 500 || status == 429 || retryable(&code);
                    (
                        retry,
                        ImportError::Api {
                            action: action.into(),
                            code,
                            message,
                        },
                    )
                }
                Err(e) => (
                    true,
                    ImportError::Transport {
                        action: action.into(),
                        message: e,
                    },
                ),
            };
            if !retry || last {
                return Err(match err {
                    ImportError::Api {
                        action,
                        code,
                        message,
                    } if retry => ImportError::Api {
                        action,
                        code,
                        message: format!("{message} (gave up after {attempts} attempts)"),
                    },
                    e => e,
                });
            }
            log::warn!("aws import: {err}; retrying in {wait:?}");
            self.retries.set(self.retries.get() + 1);
            self.wait(wait);
            wait = (wait * 2).min(Duration::from_secs(20));
        }
        unreachable!("the last attempt returns")
    }

    /// Every page of `action`, through `parse`.
    pub fn all<T>(
        &self,
        action: &str,
        extra: &[(String, String)],
        paged: bool,
        parse: fn(&str) -> Result<Page<T>, XmlError>,
    ) -> Result<Vec<T>, ImportError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        let mut seen = std::collections::HashSet::new();
        for _ in 0..MAX_PAGES {
            let mut p = extra.to_vec();
            if paged {
                p.push(("MaxResults".into(), self.opts.page_size.to_string()));
            }
            if let Some(t) = &token {
                p.push(("NextToken".into(), t.clone()));
            }
            let body = self.request(action, &p)?;
            let page = parse(&body).map_err(|e| match e {
                XmlError::Api { code, message } => ImportError::Api {
                    action: action.into(),
                    code,
                    message,
                },
                e => ImportError::Response {
                    action: action.into(),
                    message: e.to_string(),
                },
            })?;
            out.extend(page.items);
            match page.next_token {
                Some(t) if !seen.insert(t.clone()) => {
                    return Err(ImportError::Response {
                        action: action.into(),
                        message: format!("NextToken `{t}` came back twice: the pages loop"),
                    })
                }
                Some(t) => token = Some(t),
                None => return Ok(out),
            }
        }
        Err(ImportError::Response {
            action: action.into(),
            message: format!("more than {MAX_PAGES} pages"),
        })
    }
}

fn p(k: &str, v: &str) -> (String, String) {
    (k.to_string(), v.to_string())
}

/// Reads the region's VPCs, subnets, AZs, instances, transit gateways and their attachments,
/// peerings and the S3 and DynamoDB prefix lists. Any failed call fails the whole import.
pub fn read_inventory(c: &Client<'_>, region: &str) -> Result<Inventory, ImportError> {
    let zones = c.all("DescribeAvailabilityZones", &[], false, ec2_xml::zones)?;
    let vpcs = c.all("DescribeVpcs", &[], true, ec2_xml::vpcs)?;
    let subnets = c.all("DescribeSubnets", &[], true, ec2_xml::subnets)?;
    let instances = c.all("DescribeInstances", &[], true, ec2_xml::instances)?;
    let tgws = c.all(
        "DescribeTransitGateways",
        &[],
        true,
        ec2_xml::transit_gateways,
    )?;
    let attachments = c.all(
        "DescribeTransitGatewayAttachments",
        &[],
        true,
        ec2_xml::tgw_attachments,
    )?;
    let peerings = c.all(
        "DescribeVpcPeeringConnections",
        &[],
        true,
        ec2_xml::peerings,
    )?;
    let names = [
        format!("com.amazonaws.{region}.s3"),
        format!("com.amazonaws.{region}.dynamodb"),
    ];
    let filter = [
        p("Filter.1.Name", "prefix-list-name"),
        p("Filter.1.Value.1", &names[0]),
        p("Filter.1.Value.2", &names[1]),
    ];
    let lists = c.all(
        "DescribeManagedPrefixLists",
        &filter,
        true,
        ec2_xml::prefix_lists,
    )?;
    let mut prefix_lists = Vec::new();
    for l in lists.into_iter().filter(|l| names.contains(&l.name)) {
        let entries = c.all(
            "GetManagedPrefixListEntries",
            &[p("PrefixListId", &l.id)],
            true,
            ec2_xml::prefix_list_entries,
        )?;
        prefix_lists.push((l, entries));
    }
    Ok(Inventory {
        region: region.to_string(),
        zones,
        vpcs,
        subnets,
        instances,
        tgws,
        attachments,
        peerings,
        prefix_lists,
    })
}

/// Credentials, transport and every call: the inventory of `o.region`. `stop` ends retries
/// early (the collector stopping).
pub fn import(
    o: &AwsOptions,
    stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
) -> Result<Inventory, ImportError> {
    if o.region.is_empty()
        || !o
            .region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(ImportError::Config(format!(
            "`{}` is not a region name (like us-east-1)",
            o.region
        )));
    }
    let creds = credentials(o.profile.as_deref())?;
    let t = HttpTransport::new(o, creds)?;
    let mut c = Client::new(&t, o.clone());
    if let Some(s) = stop {
        c = c.with_stop(s);
    }
    read_inventory(&c, &o.region)
}

#[cfg(test)]
mod test {
    use super::*;
    use std::cell::RefCell;
    use std::collections::VecDeque;

    fn fixture(name: &str) -> String {
        let p = format!(
            "{}/src/discovery/testdata/{name}.xml",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
    }

    /// Answers each action from a queue of scripted replies (the last one repeats), recording
    /// every request's parameters.
    type Reply = Result<(u16, String), String>;

    struct Replay {
        replies: RefCell<HashMap<String, VecDeque<Reply>>>,
        calls: RefCell<Vec<Vec<(String, String)>>>,
    }
    use std::collections::HashMap;

    impl Replay {
        fn recorded() -> Replay {
            let r = Replay {
                replies: RefCell::new(HashMap::new()),
                calls: RefCell::new(Vec::new()),
            };
            for a in [
                "DescribeAvailabilityZones",
                "DescribeVpcs",
                "DescribeSubnets",
                "DescribeInstances",
                "DescribeTransitGateways",
                "DescribeTransitGatewayAttachments",
                "DescribeVpcPeeringConnections",
                "DescribeManagedPrefixLists",
            ] {
                r.set(a, vec![Ok((200, fixture(a)))]);
            }
            r
        }
        fn set(&self, action: &str, replies: Vec<Reply>) {
            self.replies
                .borrow_mut()
                .insert(action.into(), replies.into());
        }
        fn count(&self, action: &str) -> usize {
            self.calls
                .borrow()
                .iter()
                .filter(|c| c.iter().any(|(k, v)| k == "Action" && v == action))
                .count()
        }
    }

    impl Transport for Replay {
        fn call(&self, params: &[(String, String)]) -> Result<(u16, String), String> {
            self.calls.borrow_mut().push(params.to_vec());
            let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            let action = get("Action").unwrap();
            if action == "GetManagedPrefixListEntries" {
                let id = get("PrefixListId").unwrap();
                let lists = fixture("DescribeManagedPrefixLists");
                let at = lists.find(&id).unwrap();
                let which = if lists[at..]
                    .split("</item>")
                    .next()
                    .unwrap()
                    .contains(".s3<")
                {
                    "s3"
                } else {
                    "dynamodb"
                };
                return Ok((
                    200,
                    fixture(&format!("GetManagedPrefixListEntries-{which}")),
                ));
            }
            let mut r = self.replies.borrow_mut();
            let q = r.get_mut(&action).unwrap();
            if q.len() > 1 {
                q.pop_front().unwrap()
            } else {
                q.front().unwrap().clone()
            }
        }
    }

    fn client(t: &Replay) -> Client<'_> {
        Client::new(t, AwsOptions::new("us-east-1")).without_waiting()
    }

    #[test]
    fn test_recorded_account_imports_and_renders() {
        let t = Replay::recorded();
        let inv = read_inventory(&client(&t), "us-east-1").unwrap();
        assert_eq!((inv.vpcs.len(), inv.instances.len()), (4, 5));
        assert_eq!(inv.prefix_lists.len(), 2);
        let text = crate::discovery::render(&inv).unwrap();
        let topo = crate::topology::Topology::parse(&text).unwrap();
        let e = topo.resolve("10.10.2.10".parse().unwrap());
        assert_eq!(e.host, Some("web-2"));
        assert_eq!(e.az, Some("use1-az1"));
        assert!(e.subnet.is_some() && e.vpc.is_some());
        let s3 = topo.resolve("52.216.1.1".parse().unwrap());
        assert_eq!(s3.service, Some("s3"));
        assert_eq!(topo.gateways().len(), 2);
        // Every action asked for a page size except the AZ list (which has none).
        let calls = t.calls.borrow();
        for c in calls.iter() {
            let paged = c.iter().any(|(k, _)| k == "MaxResults");
            let azs = c.iter().any(|(_, v)| v == "DescribeAvailabilityZones");
            assert_eq!(paged, !azs, "{c:?}");
        }
    }

    #[test]
    fn test_pages_follow_next_token() {
        let t = Replay::recorded();
        let full = fixture("DescribeInstances");
        // Page 1: the whole recorded page plus a token; page 2: an empty page.
        let first = full.replace(
            "</reservationSet>",
            "</reservationSet><nextToken>p2</nextToken>",
        );
        let second = full.split("<reservationSet>").next().unwrap().to_string()
            + "<reservationSet/></DescribeInstancesResponse>";
        t.set(
            "DescribeInstances",
            vec![Ok((200, first)), Ok((200, second))],
        );
        let inv = read_inventory(&client(&t), "us-east-1").unwrap();
        assert_eq!(inv.instances.len(), 5);
        assert_eq!(t.count("DescribeInstances"), 2);
        let calls = t.calls.borrow();
        let second_call = calls
            .iter()
            .filter(|c| c.iter().any(|(_, v)| v == "DescribeInstances"))
            .nth(1)
            .unwrap();
        assert!(second_call.contains(&("NextToken".into(), "p2".into())));
    }

    #[test]
    fn test_a_token_that_repeats_is_an_error_not_a_hang() {
        let t = Replay::recorded();
        let looped =
            fixture("DescribeVpcs").replace("</vpcSet>", "</vpcSet><nextToken>x</nextToken>");
        t.set("DescribeVpcs", vec![Ok((200, looped))]);
        let e = read_inventory(&client(&t), "us-east-1").unwrap_err();
        assert!(e.to_string().contains("came back twice"), "{e}");
        assert_eq!(t.count("DescribeVpcs"), 2);
    }

    #[test]
    fn test_throttling_is_retried_with_backoff_then_given_up() {
        let throttled = r#"<?xml version="1.0"?><Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>x</RequestID></Response>"#;
        let t = Replay::recorded();
        t.set(
            "DescribeSubnets",
            vec![
                Ok((503, throttled.into())),
                Err("connection reset".into()),
                Ok((200, fixture("DescribeSubnets"))),
            ],
        );
        let c = client(&t);
        read_inventory(&c, "us-east-1").unwrap();
        assert_eq!(c.retries.get(), 2);
        assert_eq!(t.count("DescribeSubnets"), 3);

        // Throttled every time: a clear error after the configured attempts.
        let t = Replay::recorded();
        t.set("DescribeSubnets", vec![Ok((503, throttled.into()))]);
        let c = client(&t);
        let e = read_inventory(&c, "us-east-1").unwrap_err();
        assert!(
            matches!(&e, ImportError::Api { code, .. } if code == "RequestLimitExceeded"),
            "{e}"
        );
        assert!(e.to_string().contains("gave up after 5 attempts"), "{e}");
        assert_eq!(t.count("DescribeSubnets"), 5);
    }

    /// A stop ends a back-off at once: the collector's shutdown never waits out the retries.
    #[test]
    fn test_stop_ends_the_backoff() {
        let t = Replay::recorded();
        t.set("DescribeAvailabilityZones", vec![Err("refused".into())]);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut o = AwsOptions::new("us-east-1");
        o.backoff = Duration::from_secs(3600);
        let c = Client::new(&t, o).with_stop(stop.clone());
        let setter = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50)); // the shutdown comes later
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        let t0 = std::time::Instant::now();
        let e = read_inventory(&c, "us-east-1").unwrap_err();
        setter.join().unwrap();
        assert!(e.to_string().contains("stopping"), "{e}");
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
        assert_eq!(t.count("DescribeAvailabilityZones"), 1);
    }

    #[test]
    fn test_api_errors_are_not_retried() {
        let t = Replay::recorded();
        t.set("DescribeVpcs", vec![Ok((403, r#"<?xml version="1.0"?><Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized to perform this operation.</Message></Error></Errors></Response>"#.into()))]);
        let e = read_inventory(&client(&t), "us-east-1").unwrap_err();
        assert_eq!(
            e.to_string(),
            "aws import: DescribeVpcs failed: UnauthorizedOperation: You are not authorized to perform this operation."
        );
        assert_eq!(t.count("DescribeVpcs"), 1);
    }

    #[test]
    fn test_a_cut_off_page_fails_the_import() {
        let t = Replay::recorded();
        let full = fixture("DescribeInstances");
        let first = full.replace(
            "</reservationSet>",
            "</reservationSet><nextToken>p2</nextToken>",
        );
        t.set(
            "DescribeInstances",
            vec![
                Ok((200, first)),
                Ok((200, full[..full.len() - 40].to_string())),
            ],
        );
        let e = read_inventory(&client(&t), "us-east-1").unwrap_err();
        assert!(
            matches!(&e, ImportError::Response { action, .. } if action == "DescribeInstances"),
            "{e}"
        );
    }

    #[test]
    fn test_profile_credentials() {
        let text = "[default]\naws_access_key_id = A\naws_secret_access_key = S\n\n[ci]\naws_access_key_id=B\naws_secret_access_key=T\naws_session_token = X\n";
        let c = profile_credentials(text, "ci").unwrap();
        assert_eq!(
            (
                c.access_key.as_str(),
                c.secret_key.as_str(),
                c.session_token.as_deref()
            ),
            ("B", "T", Some("X"))
        );
        assert_eq!(
            profile_credentials(text, "default").unwrap().access_key,
            "A"
        );
        assert!(profile_credentials(text, "nope")
            .unwrap_err()
            .contains("profile `nope`"));
        assert!(
            !format!("{c:?}").contains('T'),
            "the secret is never printed"
        );
    }

    #[test]
    fn test_requests_are_signed() {
        let o = AwsOptions::new("us-east-1");
        let t = HttpTransport::new(
            &o,
            Credentials {
                access_key: "AKIDEXAMPLE".into(),
                secret_key: "secret".into(),
                session_token: Some("tok".into()),
            },
        )
        .unwrap();
        let h: HashMap<String, String> = t
            .sign("Action=DescribeVpcs&Version=2016-11-15")
            .unwrap()
            .into_iter()
            .collect();
        let auth = &h["authorization"];
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"),
            "{auth}"
        );
        assert!(auth.contains("/us-east-1/ec2/aws4_request"), "{auth}");
        assert!(
            auth.contains("SignedHeaders=content-type;host;x-amz-date"),
            "{auth}"
        );
        assert_eq!(h["x-amz-security-token"], "tok");
        assert_eq!(
            form(&[("NextToken".into(), "a+b/c=".into())]),
            "NextToken=a%2Bb%2Fc%3D"
        );
    }
}
