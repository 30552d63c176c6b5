//! The only async code: looking up every planned reference concurrently under one deadline.
//!
//! [`Kms`] and [`Ssm`] are the two ports; [`aws`] holds their AWS SDK adapters and unit tests
//! use fakes. [`resolve`] starts every KMS `Decrypt` and every `GetParameters` batch at once, each
//! bounded by the same deadline, and maps every answer back to the plan's indices.

pub mod aws;
pub mod region;
pub mod tls;

use crate::error::{Class, Reason};
use crate::plan::{Outcomes, Plan, Resolved};
use crate::reference::SsmRef;
use crate::sealed::Context;
use crate::secret::Secret;
use futures_util::future::join_all;
use std::future::Future;
use tokio::time::{Instant, timeout_at};

/// Decrypts KMS ciphertext blobs.
pub trait Kms {
    /// KMS `Decrypt` of one blob with an encryption context (empty for none) in the configured
    /// region; the result's `source` is the key ARN.
    fn decrypt(
        &self,
        blob: &[u8],
        context: &Context,
        deadline: Instant,
    ) -> impl Future<Output = Result<Resolved, Reason>>;
}

/// One parameter as `GetParameters` returned it.
#[derive(Debug)]
pub struct Parameter {
    /// `Name` as returned (a name, or an ARN for parameters shared from another account).
    pub name: String,
    /// `ARN` as returned, when present.
    pub arn: Option<String>,
    /// `Version` as returned.
    pub version: Option<i64>,
    /// The decrypted value.
    pub value: Secret,
}

/// Reads Parameter Store.
pub trait Ssm {
    /// `GetParameters` with decryption for at most ten names or ARNs (with selectors) in
    /// `region` (`None` = configured). Names SSM does not know are simply absent.
    fn get_parameters(
        &self,
        region: Option<&str>,
        names: &[String],
        deadline: Instant,
    ) -> impl Future<Output = Result<Vec<Parameter>, Reason>>;
}

/// Resolves everything `plan` needs, concurrently; nothing runs past `deadline`.
pub async fn resolve(plan: &Plan, kms: &impl Kms, ssm: &impl Ssm, deadline: Instant) -> Outcomes {
    let decrypts = join_all(
        plan.kms
            .iter()
            .map(|job| bounded(deadline, kms.decrypt(&job.blob, &job.context, deadline))),
    );
    let fetches = join_all(plan.batches.iter().map(|batch| {
        let names: Vec<String> = batch.refs.iter().map(|&i| plan.ssm[i].request()).collect();
        let region = batch.region.clone();
        async move {
            bounded(
                deadline,
                ssm.get_parameters(region.as_deref(), &names, deadline),
            )
            .await
        }
    }));
    let (kms_results, batch_results) = futures_util::future::join(decrypts, fetches).await;

    let mut ssm_results: Vec<Option<Result<Resolved, Reason>>> = vec![None; plan.ssm.len()];
    for (batch, result) in plan.batches.iter().zip(batch_results) {
        match result {
            Ok(params) => {
                for &i in &batch.refs {
                    let wanted = &plan.ssm[i];
                    ssm_results[i] = Some(
                        params
                            .iter()
                            .find(|p| answers(wanted, p))
                            .map(|p| Resolved {
                                secret: p.value.clone(),
                                source: p.arn.clone(),
                                version: p.version,
                            })
                            .ok_or_else(|| {
                                Reason::new(
                                    Class::NotFound,
                                    format!("SSM has no parameter {wanted} (InvalidParameters)"),
                                )
                            }),
                    );
                }
            }
            Err(reason) => {
                for &i in &batch.refs {
                    ssm_results[i] = Some(Err(reason.clone()));
                }
            }
        }
    }
    Outcomes {
        kms: kms_results,
        ssm: ssm_results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Reason::new(Class::TimedOut, "not resolved"))))
            .collect(),
    }
}

/// Whether returned parameter `p` is the answer to `wanted`. A batch never holds one name twice,
/// so the name (or the ARN, for shared parameters) identifies it.
fn answers(wanted: &SsmRef, p: &Parameter) -> bool {
    p.name == wanted.name
        || wanted
            .arn
            .as_deref()
            .is_some_and(|arn| p.name == arn || p.arn.as_deref() == Some(arn))
}

async fn bounded<T>(
    deadline: Instant,
    fut: impl Future<Output = Result<T, Reason>>,
) -> Result<T, Reason> {
    timeout_at(deadline, fut).await.unwrap_or_else(|_| {
        Err(Reason::new(
            Class::TimedOut,
            "no answer before the deadline",
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::ffi::OsString;
    use std::time::Duration;

    /// Decrypts a blob to its reversed bytes; `[0xff]` hangs forever.
    struct FakeKms {
        calls: RefCell<usize>,
    }

    impl Kms for FakeKms {
        async fn decrypt(&self, blob: &[u8], _: &Context, _: Instant) -> Result<Resolved, Reason> {
            *self.calls.borrow_mut() += 1;
            if blob == [0xff] {
                std::future::pending::<()>().await;
            }
            if blob == [0xee] {
                return Err(Reason::new(
                    Class::BadCiphertext,
                    "InvalidCiphertextException",
                ));
            }
            Ok(Resolved::plain(Secret::new(
                blob.iter().rev().copied().collect(),
            )))
        }
    }

    /// Knows the parameters in `values`; records every batch it was asked for.
    struct FakeSsm {
        values: HashMap<String, String>,
        batches: RefCell<Vec<(Option<String>, Vec<String>)>>,
    }

    impl Ssm for FakeSsm {
        async fn get_parameters(
            &self,
            region: Option<&str>,
            names: &[String],
            _: Instant,
        ) -> Result<Vec<Parameter>, Reason> {
            self.batches
                .borrow_mut()
                .push((region.map(Into::into), names.to_vec()));
            assert!(names.len() <= 10);
            Ok(names
                .iter()
                .filter_map(|n| {
                    self.values.get(n).map(|v| Parameter {
                        name: n.split(':').next().unwrap().to_owned(),
                        arn: None,
                        version: Some(1),
                        value: Secret::new(v.clone().into_bytes()),
                    })
                })
                .collect())
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    fn run(plan: &Plan, kms: &FakeKms, ssm: &FakeSsm, ms: u64) -> Outcomes {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(resolve(
            plan,
            kms,
            ssm,
            Instant::now() + Duration::from_millis(ms),
        ))
    }

    fn fakes(values: &[(&str, &str)]) -> (FakeKms, FakeSsm) {
        (
            FakeKms {
                calls: RefCell::new(0),
            },
            FakeSsm {
                values: values
                    .iter()
                    .map(|(k, v)| ((*k).into(), (*v).into()))
                    .collect(),
                batches: RefCell::new(Vec::new()),
            },
        )
    }

    #[test]
    fn maps_answers_back_and_missing_names_to_not_found() {
        let plan = Plan::new(
            env(&[
                ("A", "ssm:/a"),
                ("B", "ssm:/b:2"),
                ("C", "ssm:/missing"),
                ("K", "kms:AQI="),
                ("K2", "kms:AQI="),
            ]),
            &Default::default(),
        );
        let (kms, ssm) = fakes(&[("/a", "va"), ("/b:2", "vb")]);
        let out = run(&plan, &kms, &ssm, 1000);
        assert_eq!(*kms.calls.borrow(), 1, "one Decrypt per distinct blob");
        assert_eq!(ssm.batches.borrow().len(), 1);
        assert_eq!(out.ssm[0].as_ref().unwrap().secret.expose(), b"va");
        assert_eq!(out.ssm[1].as_ref().unwrap().secret.expose(), b"vb");
        assert_eq!(out.ssm[2].as_ref().unwrap_err().class, Class::NotFound);
        assert_eq!(out.kms[0].as_ref().unwrap().secret.expose(), [2, 1]);
    }

    #[test]
    fn twenty_five_names_take_three_calls() {
        let names: Vec<(String, String)> = (0..25)
            .map(|i| (format!("V{i}"), format!("ssm:/p{i}")))
            .collect();
        let values: Vec<(String, String)> = (0..25)
            .map(|i| (format!("/p{i}"), format!("v{i}")))
            .collect();
        let plan = Plan::new(
            names.iter().map(|(k, v)| (k.into(), v.into())),
            &Default::default(),
        );
        let pairs: Vec<(&str, &str)> = values
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let (kms, ssm) = fakes(&pairs);
        let out = run(&plan, &kms, &ssm, 1000);
        let sizes: Vec<usize> = ssm.batches.borrow().iter().map(|b| b.1.len()).collect();
        assert_eq!(sizes, vec![10, 10, 5]);
        for (i, r) in out.ssm.iter().enumerate() {
            assert_eq!(
                r.as_ref().unwrap().secret.expose(),
                format!("v{i}").as_bytes()
            );
        }
    }

    #[test]
    fn a_hanging_call_times_out_and_the_others_still_answer() {
        let plan = Plan::new(
            env(&[
                ("HANG", "kms:/w=="),
                ("OK", "kms:AQI="),
                ("BAD", "kms:7g=="),
            ]),
            &Default::default(),
        );
        let (kms, ssm) = fakes(&[]);
        let out = run(&plan, &kms, &ssm, 500);
        assert_eq!(out.kms[0].as_ref().unwrap_err().class, Class::TimedOut);
        assert!(out.kms[1].is_ok());
        assert_eq!(out.kms[2].as_ref().unwrap_err().class, Class::BadCiphertext);
    }
}
