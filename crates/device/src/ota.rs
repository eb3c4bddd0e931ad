//! `POST /api/v1/ota`: a streamed, signed firmware upload.
//!
//! The body is a signed manifest followed by the image
//! ([`protocol::firmware`]). The request signature covers the SHA-256 of the
//! whole body, which is only known at the end, so: freshness and replay are
//! checked before the first byte is read, the body is hashed as it streams,
//! the manifest is checked (board, version, ed25519 signature) before the
//! slot is touched, and the slot is activated only after both the request
//! signature and the image digest verify. A truncated, unsigned or altered
//! upload never becomes bootable.
//!
//! Authentication answers first: a refusal found while the body streams
//! (OTA off, too large, bad manifest, slot error) aborts the slot at once but
//! is only *remembered*; the rest of the body is still hashed, and at the end
//! a bad request signature answers 401 before the remembered refusal is
//! told. So an unauthenticated client learns nothing but 401 (only a
//! truncated body, which cannot be authenticated, answers 400 as such).

use alloc::format;
use alloc::string::{String, ToString};

use protocol::auth::{Authorization, BodyHasher};
use protocol::firmware::{FirmwarePublicKey, FirmwareVersion, OtaReceiver};
use protocol::{ApiKey, Verifier};

use crate::api::Response;
use crate::platform::OtaSlot;

/// OTA settings of a build.
#[derive(Debug, Clone, Default)]
pub struct OtaOptions {
    /// The ed25519 public key firmware manifests must be signed with
    /// (`None`: OTA refused).
    pub public_key: Option<[u8; 32]>,
}

/// An upload in progress.
pub struct Upload {
    key: ApiKey,
    auth: Authorization,
    method: String,
    path_query: String,
    hasher: BodyHasher,
    rx: Option<OtaReceiver>,
    written: usize,
    begun: bool,
    /// A refusal found before the request was authenticated; answered after
    /// the signature verified.
    refused: Option<Response>,
}

impl Upload {
    /// Starts an upload of `len` body bytes. A refusal that does not need
    /// the body (OTA off, larger than the slot) is remembered and answered
    /// by [`Self::finish`] once the request signature verified.
    #[allow(clippy::too_many_arguments)]
    pub fn begin<O: OtaSlot>(
        opts: &OtaOptions,
        board: &str,
        running: FirmwareVersion,
        slot: &mut O,
        key: ApiKey,
        auth: Authorization,
        method: &str,
        path_query: &str,
        len: usize,
    ) -> Self {
        let capacity = slot.capacity();
        let (rx, refused) = match opts.public_key.map(|pk| FirmwarePublicKey::from_bytes(&pk)) {
            None => (
                None,
                Some(Response::error(
                    501,
                    "this device has no firmware key; OTA is off",
                )),
            ),
            Some(Err(_)) => (
                None,
                Some(Response::error(500, "firmware public key invalid")),
            ),
            Some(Ok(_)) if len > capacity + protocol::firmware::MANIFEST_LEN => (
                None,
                Some(Response::error(413, "image larger than the OTA slot")),
            ),
            Some(Ok(pk)) => (
                Some(OtaReceiver::new(pk, running, board, capacity as u32)),
                None,
            ),
        };
        Self {
            key,
            auth,
            method: method.to_string(),
            path_query: path_query.to_string(),
            hasher: BodyHasher::new(),
            rx,
            written: 0,
            begun: false,
            refused,
        }
    }

    /// Feeds the next body bytes. A refusal (bad manifest or image, slot
    /// error) aborts the slot and is remembered for [`Self::finish`]; the
    /// body keeps being hashed so the signature can still be checked first.
    pub fn chunk<O: OtaSlot>(&mut self, slot: &mut O, data: &[u8]) -> Result<(), Response> {
        self.hasher.update(data);
        if self.refused.is_some() {
            return Ok(());
        }
        if let Err(r) = self.feed(slot, data) {
            self.abort(slot);
            self.rx = None;
            self.refused = Some(r);
        }
        Ok(())
    }

    fn feed<O: OtaSlot>(&mut self, slot: &mut O, data: &[u8]) -> Result<(), Response> {
        let Some(rx) = self.rx.as_mut() else {
            return Err(Response::error(400, "upload already finished"));
        };
        let image = rx
            .push(data)
            .map_err(|e| Response::error(400, &format!("firmware refused: {e}")))?;
        if image.is_empty() {
            return Ok(());
        }
        if !self.begun {
            let size = rx.manifest().map_or(0, |m| m.image_size as usize);
            slot.begin(size)
                .map_err(|e| Response::error(500, &format!("OTA slot: {e:?}")))?;
            self.begun = true;
        }
        slot.write(self.written, image)
            .map_err(|e| Response::error(500, &format!("OTA slot write: {e:?}")))?;
        self.written += image.len();
        Ok(())
    }

    /// Abandons the upload.
    pub fn abort<O: OtaSlot>(&mut self, slot: &mut O) {
        if self.begun {
            slot.abort();
            self.begun = false;
        }
    }

    /// Ends the upload: verifies the request signature over the body hash
    /// (401 first), then answers a remembered refusal, then verifies the
    /// image and activates the slot. Returns the new version.
    pub fn finish<O: OtaSlot>(
        mut self,
        slot: &mut O,
        verifier: &mut Verifier,
        complete: bool,
        wall_now_ms: Option<u64>,
    ) -> Result<FirmwareVersion, Response> {
        let fail = |up: &mut Self, slot: &mut O, r: Response| {
            up.abort(slot);
            Err(r)
        };
        if !complete {
            return fail(&mut self, slot, Response::error(400, "upload truncated"));
        }
        let digest = core::mem::take(&mut self.hasher).finish();
        if let Err(e) = verifier.verify(
            &self.key,
            &self.method,
            &self.path_query,
            &digest,
            &self.auth,
            wall_now_ms,
        ) {
            let _ = e; // all auth refusals look alike to the client
            return fail(
                &mut self,
                slot,
                Response::error(401, "bad request signature"),
            );
        }
        if let Some(r) = self.refused.take() {
            return fail(&mut self, slot, r);
        }
        let Some(rx) = self.rx.take() else {
            return fail(
                &mut self,
                slot,
                Response::error(400, "upload already finished"),
            );
        };
        match rx.finish() {
            Ok(m) => {
                if let Err(e) = slot.activate() {
                    return fail(
                        &mut self,
                        slot,
                        Response::error(500, &format!("OTA activate: {e:?}")),
                    );
                }
                Ok(m.version)
            }
            Err(e) => fail(
                &mut self,
                slot,
                Response::error(400, &format!("firmware refused: {e}")),
            ),
        }
    }
}
