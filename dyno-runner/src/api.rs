//! The runner's calls to the Platform API: read the desired state, fetch slugs, report dynos.
//! Blocking HTTP (ureq) on tokio's blocking pool; every call has a timeout.

use std::time::Duration;

use ouro_types::{DesiredState, DynoReport};

use crate::{Error, Result};

#[derive(Clone)]
pub struct ApiClient {
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl ApiClient {
    pub fn new(base: &str, token: &str) -> ApiClient {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .timeout_connect(Some(Duration::from_secs(5)))
            .build();
        ApiClient {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            agent: ureq::Agent::new_with_config(config),
        }
    }

    pub async fn desired_state(&self) -> Result<DesiredState> {
        let url = format!("{}/runner/desired-state", self.base);
        let bytes = self.blocking(move |this| this.get(&url, 16 << 20)).await?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Api(format!("bad desired state: {e}")))
    }

    /// Waits (up to about 25 s, the API's long poll) until the desired state's version differs
    /// from `after`; returns the version then.
    pub async fn changes(&self, after: u64) -> Result<u64> {
        let url = format!("{}/runner/changes?after={after}", self.base);
        let bytes = self.blocking(move |this| this.get(&url, 4096)).await?;
        let answer: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| Error::Api(format!("bad changes answer: {e}")))?;
        answer["version"].as_u64().ok_or_else(|| Error::Api("changes answer without a version".into()))
    }

    /// The slug's tar.gz (up to 1 GiB).
    pub async fn slug(&self, url: &str) -> Result<bytes::Bytes> {
        let url = url.to_string();
        Ok(self.blocking(move |this| this.get(&url, 1 << 30)).await?.into())
    }

    pub async fn report(&self, report: &DynoReport) -> Result<()> {
        let url = format!("{}/runner/dynos", self.base);
        let body = serde_json::to_vec(report).map_err(|e| Error::Api(e.to_string()))?;
        self.blocking(move |this| {
            let mut response = this
                .agent
                .put(&url)
                .header("Authorization", format!("Bearer {}", this.token))
                .header("Content-Type", "application/json")
                .send(&body[..])
                .map_err(|e| Error::Api(format!("PUT {url}: {e}")))?;
            check(&url, &mut response)?;
            Ok(Vec::<u8>::new())
        })
        .await?;
        Ok(())
    }

    fn get(&self, url: &str, limit: u64) -> Result<Vec<u8>> {
        let mut response = self
            .agent
            .get(url)
            .header("Authorization", format!("Bearer {}", self.token))
            .call()
            .map_err(|e| Error::Api(format!("GET {url}: {e}")))?;
        check(url, &mut response)?;
        response.body_mut().with_config().limit(limit).read_to_vec().map_err(|e| Error::Api(format!("GET {url}: {e}")))
    }

    async fn blocking<T: Send + 'static>(
        &self,
        call: impl FnOnce(&ApiClient) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || call(&this)).await.map_err(|e| Error::Api(e.to_string()))?
    }
}

fn check(url: &str, response: &mut ureq::http::Response<ureq::Body>) -> Result<()> {
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.body_mut().read_to_string().unwrap_or_default();
    let message = serde_json::from_str::<ouro_types::ErrorBody>(&body).map(|e| e.message).unwrap_or(body);
    Err(Error::Api(format!("{url} answered {status}: {message}")))
}
