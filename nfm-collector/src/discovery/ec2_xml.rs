//! The EC2 Query API's XML responses, read into plain structs: one function per action, each
//! returning the page's items and its `nextToken`. Missing required elements are errors that
//! name the action and the element, so a truncated or malformed page never yields a partial
//! inventory.

use roxmltree::{Document, Node};

/// A response that is not what the action should return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XmlError {
    /// Not XML at all (cut off, an HTML error page...).
    Syntax(String),
    /// An EC2 `<Response><Errors><Error>` body.
    Api { code: String, message: String },
    /// Well-formed XML without an element the action must return.
    Missing { action: String, what: String },
}

impl std::fmt::Display for XmlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            XmlError::Syntax(e) => write!(f, "the response is not valid XML ({e})"),
            XmlError::Api { code, message } => write!(f, "{code}: {message}"),
            XmlError::Missing { action, what } => {
                write!(
                    f,
                    "{action}: the response has no {what} (truncated or malformed page)"
                )
            }
        }
    }
}

/// One page of an action's items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vpc {
    pub id: String,
    /// Associated IPv4 and IPv6 CIDRs (the primary first).
    pub cidrs: Vec<String>,
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subnet {
    pub id: String,
    pub vpc: String,
    /// None for an IPv6-only subnet.
    pub cidr: Option<String>,
    pub az_name: Option<String>,
    pub az_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub id: String,
    pub name: Option<String>,
    pub state: String,
    /// Private addresses of every interface, the primary first.
    pub addresses: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitGateway {
    pub id: String,
    pub state: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TgwAttachment {
    pub tgw: String,
    pub resource_type: String,
    pub resource_id: String,
    pub state: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peering {
    pub id: String,
    pub status: String,
    pub requester_vpc: String,
    pub requester_region: Option<String>,
    pub accepter_vpc: String,
    pub accepter_region: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixList {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    pub name: String,
    pub id: String,
    pub region: String,
}

fn child<'a, 'i>(n: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    n.children()
        .find(|c| c.is_element() && c.tag_name().name() == name)
}

fn text(n: Node<'_, '_>, name: &str) -> Option<String> {
    child(n, name)
        .and_then(|c| c.text())
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// The `<item>` children of `set`.
fn items<'a, 'i>(set: Node<'a, 'i>) -> impl Iterator<Item = Node<'a, 'i>> {
    set.children()
        .filter(|c| c.is_element() && c.tag_name().name() == "item")
}

fn tag_name(n: Node<'_, '_>) -> Option<String> {
    let set = child(n, "tagSet")?;
    items(set)
        .find(|i| text(*i, "key").as_deref() == Some("Name"))
        .and_then(|i| text(i, "value"))
}

/// Parses `xml`, turning an EC2 error body into [`XmlError::Api`] and checking the root is
/// `<{action}Response>`.
fn parse<'i>(xml: &'i str, action: &str) -> Result<Document<'i>, XmlError> {
    let doc = Document::parse(xml).map_err(|e| XmlError::Syntax(e.to_string()))?;
    let root = doc.root_element();
    if root.tag_name().name() == "Response" {
        if let Some(e) = child(root, "Errors").and_then(|es| child(es, "Error")) {
            return Err(XmlError::Api {
                code: text(e, "Code").unwrap_or_else(|| "Unknown".into()),
                message: text(e, "Message").unwrap_or_default(),
            });
        }
    }
    let want = format!("{action}Response");
    if root.tag_name().name() != want {
        return Err(XmlError::Missing {
            action: action.into(),
            what: format!("<{want}> root (got <{}>)", root.tag_name().name()),
        });
    }
    Ok(doc)
}

/// An EC2 error body (`<Response><Errors>...`), if `xml` is one.
pub fn api_error(xml: &str) -> Option<(String, String)> {
    match parse(xml, "") {
        Err(XmlError::Api { code, message }) => Some((code, message)),
        _ => None,
    }
}

/// Reads one page: the list element `set` under the root, each item through `f`.
fn page<T>(
    xml: &str,
    action: &str,
    set: &str,
    f: impl Fn(Node<'_, '_>) -> Result<T, String>,
) -> Result<Page<T>, XmlError> {
    let doc = parse(xml, action)?;
    let root = doc.root_element();
    let missing = |what: String| XmlError::Missing {
        action: action.into(),
        what,
    };
    let list = child(root, set).ok_or_else(|| missing(format!("<{set}>")))?;
    let mut out = Vec::new();
    for (i, it) in items(list).enumerate() {
        out.push(f(it).map_err(|w| missing(format!("{w} in item {}", i + 1)))?);
    }
    Ok(Page {
        items: out,
        next_token: text(root, "nextToken"),
    })
}

fn need(n: Node<'_, '_>, name: &str) -> Result<String, String> {
    text(n, name).ok_or_else(|| format!("<{name}>"))
}

pub fn vpcs(xml: &str) -> Result<Page<Vpc>, XmlError> {
    page(xml, "DescribeVpcs", "vpcSet", |n| {
        let id = need(n, "vpcId")?;
        let mut cidrs = vec![need(n, "cidrBlock")?];
        let assoc = |set: &str, cidr: &str, state: &str, cidrs: &mut Vec<String>| {
            if let Some(s) = child(n, set) {
                for a in items(s) {
                    let st = child(a, state).and_then(|s| text(s, "state"));
                    if let (Some(c), Some("associated")) = (text(a, cidr), st.as_deref()) {
                        if !cidrs.contains(&c) {
                            cidrs.push(c);
                        }
                    }
                }
            }
        };
        assoc(
            "cidrBlockAssociationSet",
            "cidrBlock",
            "cidrBlockState",
            &mut cidrs,
        );
        assoc(
            "ipv6CidrBlockAssociationSet",
            "ipv6CidrBlock",
            "ipv6CidrBlockState",
            &mut cidrs,
        );
        Ok(Vpc {
            id,
            cidrs,
            name: tag_name(n),
        })
    })
}

pub fn subnets(xml: &str) -> Result<Page<Subnet>, XmlError> {
    page(xml, "DescribeSubnets", "subnetSet", |n| {
        Ok(Subnet {
            id: need(n, "subnetId")?,
            vpc: need(n, "vpcId")?,
            cidr: text(n, "cidrBlock"),
            az_name: text(n, "availabilityZone"),
            az_id: text(n, "availabilityZoneId"),
        })
    })
}

pub fn instances(xml: &str) -> Result<Page<Instance>, XmlError> {
    // Instances are nested in reservations: flatten.
    let reservations = page(xml, "DescribeInstances", "reservationSet", |r| {
        let Some(set) = child(r, "instancesSet") else {
            return Err("<instancesSet>".to_string());
        };
        let mut out = Vec::new();
        for n in items(set) {
            let mut addresses = Vec::new();
            if let Some(ip) = text(n, "privateIpAddress") {
                addresses.push(ip);
            }
            if let Some(ifs) = child(n, "networkInterfaceSet") {
                for i in items(ifs) {
                    let ips = child(i, "privateIpAddressesSet");
                    for a in ips.into_iter().flat_map(items) {
                        if let Some(ip) = text(a, "privateIpAddress") {
                            if !addresses.contains(&ip) {
                                addresses.push(ip);
                            }
                        }
                    }
                }
            }
            out.push(Instance {
                id: need(n, "instanceId")?,
                name: tag_name(n),
                state: child(n, "instanceState")
                    .and_then(|s| text(s, "name"))
                    .unwrap_or_default(),
                addresses,
            });
        }
        Ok(out)
    })?;
    Ok(Page {
        items: reservations.items.into_iter().flatten().collect(),
        next_token: reservations.next_token,
    })
}

pub fn transit_gateways(xml: &str) -> Result<Page<TransitGateway>, XmlError> {
    page(xml, "DescribeTransitGateways", "transitGatewaySet", |n| {
        Ok(TransitGateway {
            id: need(n, "transitGatewayId")?,
            state: text(n, "state").unwrap_or_default(),
        })
    })
}

pub fn tgw_attachments(xml: &str) -> Result<Page<TgwAttachment>, XmlError> {
    page(
        xml,
        "DescribeTransitGatewayAttachments",
        "transitGatewayAttachments",
        |n| {
            Ok(TgwAttachment {
                tgw: need(n, "transitGatewayId")?,
                resource_type: text(n, "resourceType").unwrap_or_default(),
                resource_id: text(n, "resourceId").unwrap_or_default(),
                state: text(n, "state").unwrap_or_default(),
            })
        },
    )
}

pub fn peerings(xml: &str) -> Result<Page<Peering>, XmlError> {
    page(
        xml,
        "DescribeVpcPeeringConnections",
        "vpcPeeringConnectionSet",
        |n| {
            let side = |name: &str| -> Result<(String, Option<String>), String> {
                let s = child(n, name).ok_or_else(|| format!("<{name}>"))?;
                Ok((need(s, "vpcId")?, text(s, "region")))
            };
            let (requester_vpc, requester_region) = side("requesterVpcInfo")?;
            let (accepter_vpc, accepter_region) = side("accepterVpcInfo")?;
            Ok(Peering {
                id: need(n, "vpcPeeringConnectionId")?,
                status: child(n, "status")
                    .and_then(|s| text(s, "code"))
                    .unwrap_or_default(),
                requester_vpc,
                requester_region,
                accepter_vpc,
                accepter_region,
            })
        },
    )
}

pub fn prefix_lists(xml: &str) -> Result<Page<PrefixList>, XmlError> {
    page(xml, "DescribeManagedPrefixLists", "prefixListSet", |n| {
        Ok(PrefixList {
            id: need(n, "prefixListId")?,
            name: need(n, "prefixListName")?,
        })
    })
}

pub fn prefix_list_entries(xml: &str) -> Result<Page<String>, XmlError> {
    page(xml, "GetManagedPrefixListEntries", "entrySet", |n| {
        need(n, "cidr")
    })
}

pub fn zones(xml: &str) -> Result<Page<Zone>, XmlError> {
    page(
        xml,
        "DescribeAvailabilityZones",
        "availabilityZoneInfo",
        |n| {
            Ok(Zone {
                name: need(n, "zoneName")?,
                id: need(n, "zoneId")?,
                region: need(n, "regionName")?,
            })
        },
    )
}

#[cfg(test)]
mod test {
    use super::*;

    fn fixture(name: &str) -> String {
        let p = format!(
            "{}/src/discovery/testdata/{name}.xml",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
    }

    #[test]
    fn test_recorded_pages_parse() {
        let v = vpcs(&fixture("DescribeVpcs")).unwrap();
        assert_eq!(v.items.len(), 4, "default VPC + app, data, edge");
        let app = v
            .items
            .iter()
            .find(|v| v.name.as_deref() == Some("app"))
            .unwrap();
        assert_eq!(app.cidrs, ["10.10.0.0/16"]);
        assert_eq!(v.next_token, None);

        let s = subnets(&fixture("DescribeSubnets")).unwrap();
        let a = s
            .items
            .iter()
            .find(|s| s.cidr.as_deref() == Some("10.10.1.0/24"))
            .unwrap();
        assert_eq!(a.az_id.as_deref(), Some("use1-az6"));
        assert_eq!(a.az_name.as_deref(), Some("us-east-1a"));
        assert_eq!(a.vpc, app.id);

        let i = instances(&fixture("DescribeInstances")).unwrap();
        assert_eq!(i.items.len(), 5);
        let web = i
            .items
            .iter()
            .find(|i| i.name.as_deref() == Some("web-1"))
            .unwrap();
        assert_eq!(web.addresses, ["10.10.1.10"]);
        assert_eq!(web.state, "running");

        let t = transit_gateways(&fixture("DescribeTransitGateways")).unwrap();
        assert_eq!(t.items.len(), 1);
        let a = tgw_attachments(&fixture("DescribeTransitGatewayAttachments")).unwrap();
        assert_eq!(a.items.len(), 2);
        assert!(a
            .items
            .iter()
            .all(|a| a.tgw == t.items[0].id && a.resource_type == "vpc" && a.state == "available"));
        let p = peerings(&fixture("DescribeVpcPeeringConnections")).unwrap();
        assert_eq!(p.items[0].status, "active");
        assert_eq!(p.items[0].requester_vpc, app.id);
        let l = prefix_lists(&fixture("DescribeManagedPrefixLists")).unwrap();
        assert!(l
            .items
            .iter()
            .any(|l| l.name == "com.amazonaws.us-east-1.s3"));
        let e = prefix_list_entries(&fixture("GetManagedPrefixListEntries-s3")).unwrap();
        assert!(e.items.contains(&"52.216.0.0/15".to_string()));
        let z = zones(&fixture("DescribeAvailabilityZones")).unwrap();
        assert!(z
            .items
            .iter()
            .any(|z| z.name == "us-east-1a" && z.id == "use1-az6"));
    }

    #[test]
    fn test_errors_are_named() {
        let e = vpcs(&fixture("Error")).unwrap_err();
        assert!(
            matches!(&e, XmlError::Api { code, .. } if code == "InvalidVpcID.NotFound"),
            "{e}"
        );
        assert_eq!(
            api_error(&fixture("Error")).unwrap().0,
            "InvalidVpcID.NotFound"
        );
        // Cut off mid-page: not XML.
        let full = fixture("DescribeSubnets");
        let e = subnets(&full[..full.len() / 2]).unwrap_err();
        assert!(matches!(e, XmlError::Syntax(_)), "{e}");
        // The wrong action's response.
        let e = subnets(&fixture("DescribeVpcs")).unwrap_err();
        assert!(e.to_string().contains("DescribeSubnetsResponse"), "{e}");
        // An item without its id.
        let broken = full.replacen("<subnetId>", "<subnetIdX>", 1).replacen(
            "</subnetId>",
            "</subnetIdX>",
            1,
        );
        let e = subnets(&broken).unwrap_err();
        assert!(e.to_string().contains("<subnetId> in item 1"), "{e}");
        // An HTML error page.
        assert!(matches!(
            vpcs("<!doctype html><html><p>500</html>"),
            Err(XmlError::Syntax(_))
        ));
    }

    #[test]
    fn test_next_token_is_read() {
        let xml =
            fixture("DescribeVpcs").replace("</vpcSet>", "</vpcSet><nextToken>abc==</nextToken>");
        assert_eq!(vpcs(&xml).unwrap().next_token.as_deref(), Some("abc=="));
    }
}
