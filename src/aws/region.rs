//! Region discovery for containers, in this order: `--region` / `KMS_ENV_REGION`, then
//! `AWS_REGION` / `AWS_DEFAULT_REGION`, the AWS profile, the region named by the input (an env
//! file's `AWS_REGION`; SSM ARNs always use their own), the ECS task metadata endpoint
//! (`ECS_CONTAINER_METADATA_URI_V4`, its availability zone), and last EC2 instance metadata
//! (IMDSv2, unless `AWS_EC2_METADATA_DISABLED`).

use aws_config::Region;
use aws_config::environment::region::EnvironmentVariableRegionProvider;
use aws_config::imds::region::ImdsRegionProvider;
use aws_config::meta::region::{ProvideRegion, RegionProviderChain, future};
use aws_config::profile::ProfileFileRegionProvider;
use aws_config::provider_config::ProviderConfig;
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The chain, `explicit` first and `fallback` (the input's own region) after the profile. IMDS
/// calls go through `http`.
pub fn chain(
    explicit: Option<String>,
    fallback: Option<String>,
    http: SharedHttpClient,
) -> RegionProviderChain {
    RegionProviderChain::first_try(explicit.map(Region::new))
        .or_else(EnvironmentVariableRegionProvider::new())
        .or_else(ProfileFileRegionProvider::new())
        .or_else(fallback.map(Region::new))
        .or_else(EcsTaskMetadata)
        .or_else(LazyImds(http))
}

/// EC2 instance metadata, its client made only when the chain gets this far (making it costs a
/// start that found its region earlier).
#[derive(Debug)]
struct LazyImds(SharedHttpClient);

impl ProvideRegion for LazyImds {
    fn region(&self) -> future::ProvideRegion<'_> {
        let config = ProviderConfig::without_region().with_http_client(self.0.clone());
        future::ProvideRegion::new(async move {
            ImdsRegionProvider::builder()
                .configure(&config)
                .build()
                .region()
                .await
        })
    }
}

/// What was tried, for the message when no region was found.
pub fn tried() -> String {
    let set = |v: &str| std::env::var_os(v).is_some();
    format!(
        "no AWS region found. Tried: --region / KMS_ENV_REGION, AWS_REGION / AWS_DEFAULT_REGION, \
         the AWS profile, the env file's AWS_REGION, ECS task metadata ({}), EC2 instance \
         metadata ({})",
        if set("ECS_CONTAINER_METADATA_URI_V4") {
            "no answer"
        } else {
            "ECS_CONTAINER_METADATA_URI_V4 not set"
        },
        if std::env::var("AWS_EC2_METADATA_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"))
        {
            "disabled"
        } else {
            "no answer"
        }
    )
}

/// The ECS task metadata endpoint v4: `GET ${ECS_CONTAINER_METADATA_URI_V4}/task`.
#[derive(Debug)]
struct EcsTaskMetadata;

impl ProvideRegion for EcsTaskMetadata {
    fn region(&self) -> future::ProvideRegion<'_> {
        future::ProvideRegion::new(async {
            let base = std::env::var("ECS_CONTAINER_METADATA_URI_V4").ok()?;
            let url = format!("{}/task", base.trim_end_matches('/'));
            let body = tokio::time::timeout(Duration::from_secs(2), http_get(&url))
                .await
                .ok()??;
            let task: serde_json::Value = serde_json::from_slice(&body).ok()?;
            let az = task.get("AvailabilityZone")?.as_str()?;
            region_of_zone(az).map(Region::new)
        })
    }
}

/// `us-east-1a` → `us-east-1`; `us-gov-west-1b` → `us-gov-west-1`; `us-west-2-lax-1a` →
/// `us-west-2` (a Local Zone belongs to its parent region).
pub fn region_of_zone(zone: &str) -> Option<String> {
    let mut parts = Vec::new();
    for part in zone.split('-') {
        if part.starts_with(|c: char| c.is_ascii_digit()) {
            parts.push(part.trim_end_matches(|c: char| c.is_ascii_lowercase()));
            return (parts.len() >= 3).then(|| parts.join("-"));
        }
        parts.push(part);
    }
    None
}

/// A minimal HTTP/1.1 GET over plain TCP (the metadata endpoints are link-local HTTP).
async fn http_get(url: &str) -> Option<Vec<u8>> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    let mut stream = tokio::net::TcpStream::connect(authority).await.ok()?;
    let request = format!("GET /{path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.ok()?;
    let split = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&response[..split]).ok()?;
    let body = &response[split + 4..];
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return None;
    }
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if chunked {
        dechunk(body)
    } else {
        Some(body.to_vec())
    }
}

fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&body[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_to_regions() {
        assert_eq!(region_of_zone("us-east-1a").as_deref(), Some("us-east-1"));
        assert_eq!(
            region_of_zone("eu-central-1c").as_deref(),
            Some("eu-central-1")
        );
        assert_eq!(
            region_of_zone("us-gov-west-1b").as_deref(),
            Some("us-gov-west-1")
        );
        assert_eq!(
            region_of_zone("us-west-2-lax-1a").as_deref(),
            Some("us-west-2")
        );
        assert_eq!(
            region_of_zone("ap-southeast-4a").as_deref(),
            Some("ap-southeast-4")
        );
        assert_eq!(region_of_zone("nonsense"), None);
    }

    #[test]
    fn chunked_bodies() {
        assert_eq!(
            dechunk(b"4\r\nabcd\r\n2\r\nef\r\n0\r\n\r\n").unwrap(),
            b"abcdef"
        );
        assert!(dechunk(b"zz\r\n").is_none());
    }
}
