//! A small safe wrapper over librdkafka's ACL calls (CreateAcls, DescribeAcls, DeleteAcls),
//! which rust-rdkafka 0.39 does not wrap. The calls run on the native handle of the
//! [`Admin`] client, each with a queue of its own that is polled (blocking, off the async
//! workers) until its one result event arrives or the timeout passes.
//!
//! Every librdkafka object made here has an owner that frees it on drop ([`Queue`],
//! [`Options`], [`Event`], [`Binding`]); objects inside a result event belong to the event.
//! Enum values read back from librdkafka are always in range: its response parsers replace
//! values it does not know with `UNKNOWN` (rdkafka_admin.c, `DescribeAclsResponse_parse`).

// The crate's one exception to "no unsafe": every block says why it is sound.
#![allow(unsafe_code)]
#![warn(clippy::undocumented_unsafe_blocks)]

use std::collections::BTreeSet;
use std::ffi::{c_char, CStr, CString};
use std::time::Duration;

use anyhow::{bail, Context};
use rdkafka::bindings as rd;
use rdkafka::types::RDKafkaErrorCode;

use super::{Acl, Operation, PatternType, Permission, ResourceType};
use crate::topics::cluster::Admin;

/// The broker's ACLs, and how many of them are of kinds librdkafka cannot name.
#[derive(Debug, Default)]
pub struct Described {
    pub acls: BTreeSet<Acl>,
    pub unmanaged: usize,
}

/// Every ACL the broker has (a match-any filter).
pub fn describe_all(admin: &Admin, timeout: Duration) -> anyhow::Result<Described> {
    let filter = Binding::match_any()?;
    let event = call(
        admin,
        rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBEACLS,
        timeout,
        |rk, options, queue| {
            // SAFETY: `rk`, `options` and `queue` are live for the call; librdkafka copies the
            // filter (rdkafka_admin.c: `rd_kafka_AclBindingFilter_copy`), which `filter` still frees.
            unsafe { rd::rd_kafka_DescribeAcls(rk, filter.0, options, queue) }
        },
    )?;
    // SAFETY: the event is a DescribeAcls result (checked by `call`); the array and the bindings
    // in it belong to the event, which outlives this function's reads.
    let bindings = unsafe {
        let result = rd::rd_kafka_event_DescribeAcls_result(event.0);
        let mut count = 0;
        let array = rd::rd_kafka_DescribeAcls_result_acls(result, &mut count);
        slice(array, count)
    };
    let mut described = Described::default();
    for &binding in bindings {
        match read_binding(binding) {
            Some(acl) => {
                described.acls.insert(acl);
            }
            None => described.unmanaged += 1,
        }
    }
    Ok(described)
}

/// Creates `acls`; fails naming every ACL the broker refused.
pub fn create(admin: &Admin, acls: &[Acl], timeout: Duration) -> anyhow::Result<()> {
    change(admin, acls, Change::Create, timeout)
}

/// Deletes exactly `acls` (each filter names every field, so it matches that ACL only).
pub fn delete(admin: &Admin, acls: &[Acl], timeout: Duration) -> anyhow::Result<()> {
    change(admin, acls, Change::Delete, timeout)
}

#[derive(Clone, Copy)]
enum Change {
    Create,
    Delete,
}

/// CreateAcls or DeleteAcls of `acls`, in one request; fails naming every ACL refused.
fn change(admin: &Admin, acls: &[Acl], change: Change, timeout: Duration) -> anyhow::Result<()> {
    if acls.is_empty() {
        return Ok(());
    }
    let bindings = acls
        .iter()
        .map(|acl| match change {
            Change::Create => Binding::new(acl),
            Change::Delete => Binding::exact_filter(acl),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut pointers: Vec<*mut rd::rd_kafka_AclBinding_t> = bindings.iter().map(|b| b.0).collect();
    let op = match change {
        Change::Create => rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_CREATEACLS,
        Change::Delete => rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DELETEACLS,
    };
    let event = call(admin, op, timeout, |rk, options, queue| {
        let (array, len) = (pointers.as_mut_ptr(), pointers.len());
        // SAFETY: `array` holds `len` live bindings (filters for a delete); librdkafka copies
        // each one (`rd_kafka_AclBinding(Filter)_copy`), and `bindings` frees ours.
        unsafe {
            match change {
                Change::Create => rd::rd_kafka_CreateAcls(rk, array, len, options, queue),
                Change::Delete => rd::rd_kafka_DeleteAcls(rk, array, len, options, queue),
            }
        }
    })?;
    // SAFETY: the event is this operation's result (checked by `call`), with one result per
    // binding, in order; the results and their errors belong to the event, which lives until
    // the end of this function, and are copied into `String`s here.
    let errors: Vec<Option<String>> = unsafe {
        let mut count = 0;
        match change {
            Change::Create => {
                let result = rd::rd_kafka_event_CreateAcls_result(event.0);
                let array = rd::rd_kafka_CreateAcls_result_acls(result, &mut count);
                slice(array, count)
                    .iter()
                    .map(|&r| error_text(rd::rd_kafka_acl_result_error(r)))
                    .collect()
            }
            Change::Delete => {
                let result = rd::rd_kafka_event_DeleteAcls_result(event.0);
                let array = rd::rd_kafka_DeleteAcls_result_responses(result, &mut count);
                slice(array, count)
                    .iter()
                    .map(|&r| error_text(rd::rd_kafka_DeleteAcls_result_response_error(r)))
                    .collect()
            }
        }
    };
    let refused: Vec<String> = acls
        .iter()
        .zip(errors)
        .filter_map(|(acl, error)| Some(format!("{acl}: {}", error?)))
        .collect();
    if !refused.is_empty() {
        let verb = match change {
            Change::Create => "create",
            Change::Delete => "delete",
        };
        bail!(
            "the broker refused to {verb} ACLs:\n  {}",
            refused.join("\n  ")
        );
    }
    Ok(())
}

/// Runs one admin call with its own options and queue and waits for its result event; an
/// error of the whole request (the broker unreachable, a timeout) fails here.
fn call(
    admin: &Admin,
    op: rd::rd_kafka_admin_op_t,
    timeout: Duration,
    start: impl FnOnce(
        *mut rd::rd_kafka_t,
        *const rd::rd_kafka_AdminOptions_t,
        *mut rd::rd_kafka_queue_t,
    ),
) -> anyhow::Result<Event> {
    let rk = admin.inner().native_ptr();
    let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    let options = Options::new(rk, op, millis)?;
    let queue = Queue::new(rk)?;
    start(rk, options.0, queue.0);
    // The request times out on librdkafka's side first; the margin only guards the poll.
    let wait = millis.saturating_add(5_000);
    // SAFETY: `queue` is live; the event returned (or NULL) is ours to destroy, which `Event`
    // does.
    let event = tokio::task::block_in_place(|| unsafe { rd::rd_kafka_queue_poll(queue.0, wait) });
    if event.is_null() {
        bail!("no answer to the ACL request within {timeout:?}");
    }
    let event = Event(event);
    let expected = match op {
        rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_CREATEACLS => {
            rd::RD_KAFKA_EVENT_CREATEACLS_RESULT
        }
        rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DELETEACLS => {
            rd::RD_KAFKA_EVENT_DELETEACLS_RESULT
        }
        _ => rd::RD_KAFKA_EVENT_DESCRIBEACLS_RESULT,
    };
    // SAFETY: `event` is live.
    let kind = unsafe { rd::rd_kafka_event_type(event.0) };
    if kind != expected {
        bail!("librdkafka answered an ACL request with event type {kind}, not {expected}");
    }
    // SAFETY: `event` is live; the error string belongs to it and is copied before it goes.
    unsafe {
        let code = rd::rd_kafka_event_error(event.0);
        if code != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            let text = text(rd::rd_kafka_event_error_string(event.0)).unwrap_or_default();
            bail!("{} ({text})", RDKafkaErrorCode::from(code));
        }
    }
    Ok(event)
}

/// Owns an `rd_kafka_queue_t`.
struct Queue(*mut rd::rd_kafka_queue_t);

impl Queue {
    fn new(rk: *mut rd::rd_kafka_t) -> anyhow::Result<Self> {
        // SAFETY: `rk` is the live handle of the admin client the caller borrows.
        let queue = unsafe { rd::rd_kafka_queue_new(rk) };
        if queue.is_null() {
            bail!("librdkafka could not create a queue");
        }
        Ok(Queue(queue))
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        // SAFETY: created by `rd_kafka_queue_new`, destroyed once.
        unsafe { rd::rd_kafka_queue_destroy(self.0) }
    }
}

/// Owns an `rd_kafka_AdminOptions_t` with the request timeout set.
struct Options(*mut rd::rd_kafka_AdminOptions_t);

impl Options {
    fn new(
        rk: *mut rd::rd_kafka_t,
        op: rd::rd_kafka_admin_op_t,
        millis: i32,
    ) -> anyhow::Result<Self> {
        // SAFETY: `rk` is live; the options are freed by `Drop` even when setting fails.
        let options = Options(unsafe { rd::rd_kafka_AdminOptions_new(rk, op) });
        if options.0.is_null() {
            bail!("librdkafka could not create admin options");
        }
        let mut errstr = [0 as c_char; 256];
        // SAFETY: `errstr` is a writable buffer of the length passed, NUL-terminated by librdkafka.
        let code = unsafe {
            rd::rd_kafka_AdminOptions_set_request_timeout(
                options.0,
                millis,
                errstr.as_mut_ptr(),
                errstr.len(),
            )
        };
        if code != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            bail!("bad ACL request timeout: {}", buffer_text(&errstr));
        }
        Ok(options)
    }
}

impl Drop for Options {
    fn drop(&mut self) {
        // SAFETY: created by `rd_kafka_AdminOptions_new`, destroyed once.
        unsafe { rd::rd_kafka_AdminOptions_destroy(self.0) }
    }
}

/// Owns a result event from [`call`].
struct Event(*mut rd::rd_kafka_event_t);

impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: returned by `rd_kafka_queue_poll`, destroyed once; this frees every result
        // object inside it.
        unsafe { rd::rd_kafka_event_destroy(self.0) }
    }
}

/// librdkafka's constructor of an ACL binding or of a binding filter.
type Constructor = unsafe extern "C" fn(
    rd::rd_kafka_ResourceType_t,
    *const c_char,
    rd::rd_kafka_ResourcePatternType_t,
    *const c_char,
    *const c_char,
    rd::rd_kafka_AclOperation_t,
    rd::rd_kafka_AclPermissionType_t,
    *mut c_char,
    usize,
) -> *mut rd::rd_kafka_AclBinding_t;

/// Owns an ACL binding or binding filter of ours.
struct Binding(*mut rd::rd_kafka_AclBinding_t);

impl Binding {
    /// A binding to create.
    fn new(acl: &Acl) -> anyhow::Result<Self> {
        Self::build(acl, rd::rd_kafka_AclBinding_new)
    }

    /// A filter matching exactly `acl`.
    fn exact_filter(acl: &Acl) -> anyhow::Result<Self> {
        Self::build(acl, rd::rd_kafka_AclBindingFilter_new)
    }

    /// `acl` made by `constructor`, librdkafka's binding or binding-filter constructor (the
    /// same arguments; a filter is a binding whose fields may be "any").
    fn build(acl: &Acl, constructor: Constructor) -> anyhow::Result<Self> {
        let [name, principal, host] = c_strings(acl)?;
        let mut errstr = [0 as c_char; 256];
        // SAFETY: the strings are NUL-terminated and live for the call (librdkafka copies
        // them); `errstr` is writable for its length.
        let binding = unsafe {
            constructor(
                resource_type(acl.resource),
                name.as_ptr(),
                pattern_type(acl.pattern),
                principal.as_ptr(),
                host.as_ptr(),
                operation(acl.operation),
                permission(acl.permission),
                errstr.as_mut_ptr(),
                errstr.len(),
            )
        };
        Self::owned(binding, &errstr, acl)
    }

    /// A filter matching every ACL (NULL strings match any value).
    fn match_any() -> anyhow::Result<Self> {
        let mut errstr = [0 as c_char; 256];
        // SAFETY: NULL is allowed for the strings of a filter; `errstr` is writable.
        let filter = unsafe {
            rd::rd_kafka_AclBindingFilter_new(
                rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_ANY,
                std::ptr::null(),
                rd::rd_kafka_ResourcePatternType_t::RD_KAFKA_RESOURCE_PATTERN_ANY,
                std::ptr::null(),
                std::ptr::null(),
                rd::rd_kafka_AclOperation_t::RD_KAFKA_ACL_OPERATION_ANY,
                rd::rd_kafka_AclPermissionType_t::RD_KAFKA_ACL_PERMISSION_TYPE_ANY,
                errstr.as_mut_ptr(),
                errstr.len(),
            )
        };
        if filter.is_null() {
            bail!(
                "cannot make a match-any ACL filter: {}",
                buffer_text(&errstr)
            );
        }
        Ok(Binding(filter))
    }

    fn owned(
        binding: *mut rd::rd_kafka_AclBinding_t,
        errstr: &[c_char],
        acl: &Acl,
    ) -> anyhow::Result<Self> {
        if binding.is_null() {
            let why = buffer_text(errstr);
            bail!("cannot express the ACL `{acl}` for librdkafka: {why}");
        }
        Ok(Binding(binding))
    }
}

impl Drop for Binding {
    fn drop(&mut self) {
        // SAFETY: made by `rd_kafka_AclBinding(Filter)_new`, destroyed once.
        unsafe { rd::rd_kafka_AclBinding_destroy(self.0) }
    }
}

fn c_strings(acl: &Acl) -> anyhow::Result<[CString; 3]> {
    let c = |s: &str| CString::new(s).with_context(|| format!("`{s}` has a NUL byte"));
    Ok([c(&acl.name)?, c(&acl.principal)?, c(&acl.host)?])
}

/// An ACL read from a DescribeAcls result; `None` for kinds this tool does not manage.
fn read_binding(binding: *const rd::rd_kafka_AclBinding_t) -> Option<Acl> {
    use rd::rd_kafka_AclOperation_t as O;
    use rd::rd_kafka_AclPermissionType_t as P;
    use rd::rd_kafka_ResourcePatternType_t as T;
    use rd::rd_kafka_ResourceType_t as R;
    // SAFETY: `binding` is a live binding of a result event; the strings belong to it and are
    // copied here. Enum values are in range (see the module comment).
    let (resource, pattern, operation, permission, name, principal, host) = unsafe {
        (
            rd::rd_kafka_AclBinding_restype(binding),
            rd::rd_kafka_AclBinding_resource_pattern_type(binding),
            rd::rd_kafka_AclBinding_operation(binding),
            rd::rd_kafka_AclBinding_permission_type(binding),
            text(rd::rd_kafka_AclBinding_name(binding))?,
            text(rd::rd_kafka_AclBinding_principal(binding))?,
            text(rd::rd_kafka_AclBinding_host(binding))?,
        )
    };
    Some(Acl {
        principal,
        resource: match resource {
            R::RD_KAFKA_RESOURCE_TOPIC => ResourceType::Topic,
            R::RD_KAFKA_RESOURCE_GROUP => ResourceType::Group,
            R::RD_KAFKA_RESOURCE_TRANSACTIONAL_ID => ResourceType::TransactionalId,
            R::RD_KAFKA_RESOURCE_BROKER => ResourceType::Cluster,
            _ => return None,
        },
        name,
        pattern: match pattern {
            T::RD_KAFKA_RESOURCE_PATTERN_LITERAL => PatternType::Literal,
            T::RD_KAFKA_RESOURCE_PATTERN_PREFIXED => PatternType::Prefixed,
            _ => return None,
        },
        operation: match operation {
            O::RD_KAFKA_ACL_OPERATION_ALL => Operation::All,
            O::RD_KAFKA_ACL_OPERATION_READ => Operation::Read,
            O::RD_KAFKA_ACL_OPERATION_WRITE => Operation::Write,
            O::RD_KAFKA_ACL_OPERATION_CREATE => Operation::Create,
            O::RD_KAFKA_ACL_OPERATION_DELETE => Operation::Delete,
            O::RD_KAFKA_ACL_OPERATION_ALTER => Operation::Alter,
            O::RD_KAFKA_ACL_OPERATION_DESCRIBE => Operation::Describe,
            O::RD_KAFKA_ACL_OPERATION_CLUSTER_ACTION => Operation::ClusterAction,
            O::RD_KAFKA_ACL_OPERATION_DESCRIBE_CONFIGS => Operation::DescribeConfigs,
            O::RD_KAFKA_ACL_OPERATION_ALTER_CONFIGS => Operation::AlterConfigs,
            O::RD_KAFKA_ACL_OPERATION_IDEMPOTENT_WRITE => Operation::IdempotentWrite,
            _ => return None,
        },
        permission: match permission {
            P::RD_KAFKA_ACL_PERMISSION_TYPE_ALLOW => Permission::Allow,
            P::RD_KAFKA_ACL_PERMISSION_TYPE_DENY => Permission::Deny,
            _ => return None,
        },
        host,
    })
}

fn resource_type(r: ResourceType) -> rd::rd_kafka_ResourceType_t {
    use rd::rd_kafka_ResourceType_t as R;
    match r {
        ResourceType::Topic => R::RD_KAFKA_RESOURCE_TOPIC,
        ResourceType::Group => R::RD_KAFKA_RESOURCE_GROUP,
        ResourceType::TransactionalId => R::RD_KAFKA_RESOURCE_TRANSACTIONAL_ID,
        ResourceType::Cluster => R::RD_KAFKA_RESOURCE_BROKER,
    }
}

fn pattern_type(p: PatternType) -> rd::rd_kafka_ResourcePatternType_t {
    use rd::rd_kafka_ResourcePatternType_t as T;
    match p {
        PatternType::Literal => T::RD_KAFKA_RESOURCE_PATTERN_LITERAL,
        PatternType::Prefixed => T::RD_KAFKA_RESOURCE_PATTERN_PREFIXED,
    }
}

fn operation(o: Operation) -> rd::rd_kafka_AclOperation_t {
    use rd::rd_kafka_AclOperation_t as O;
    match o {
        Operation::All => O::RD_KAFKA_ACL_OPERATION_ALL,
        Operation::Read => O::RD_KAFKA_ACL_OPERATION_READ,
        Operation::Write => O::RD_KAFKA_ACL_OPERATION_WRITE,
        Operation::Create => O::RD_KAFKA_ACL_OPERATION_CREATE,
        Operation::Delete => O::RD_KAFKA_ACL_OPERATION_DELETE,
        Operation::Alter => O::RD_KAFKA_ACL_OPERATION_ALTER,
        Operation::Describe => O::RD_KAFKA_ACL_OPERATION_DESCRIBE,
        Operation::ClusterAction => O::RD_KAFKA_ACL_OPERATION_CLUSTER_ACTION,
        Operation::DescribeConfigs => O::RD_KAFKA_ACL_OPERATION_DESCRIBE_CONFIGS,
        Operation::AlterConfigs => O::RD_KAFKA_ACL_OPERATION_ALTER_CONFIGS,
        Operation::IdempotentWrite => O::RD_KAFKA_ACL_OPERATION_IDEMPOTENT_WRITE,
    }
}

fn permission(p: Permission) -> rd::rd_kafka_AclPermissionType_t {
    use rd::rd_kafka_AclPermissionType_t as P;
    match p {
        Permission::Allow => P::RD_KAFKA_ACL_PERMISSION_TYPE_ALLOW,
        Permission::Deny => P::RD_KAFKA_ACL_PERMISSION_TYPE_DENY,
    }
}

/// A librdkafka error object's message; `None` for NULL (no error).
///
/// # Safety
/// `error` is NULL or a live `rd_kafka_error_t`.
unsafe fn error_text(error: *const rd::rd_kafka_error_t) -> Option<String> {
    if error.is_null() {
        return None;
    }
    // SAFETY: `error` is live (the caller's promise); its string belongs to it.
    let (code, message) = unsafe {
        (
            RDKafkaErrorCode::from(rd::rd_kafka_error_code(error)),
            text(rd::rd_kafka_error_string(error)).unwrap_or_default(),
        )
    };
    Some(format!("{code} ({message})"))
}

/// The NUL-terminated message librdkafka wrote into an `errstr` buffer.
fn buffer_text(buffer: &[c_char]) -> String {
    let bytes: Vec<u8> = buffer.iter().map(|&c| c as u8).collect();
    CStr::from_bytes_until_nul(&bytes)
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A copy of a C string; `None` for NULL.
///
/// # Safety
/// `s` is NULL or a NUL-terminated string that lives for the call.
unsafe fn text(s: *const c_char) -> Option<String> {
    // SAFETY: the caller's promise.
    (!s.is_null()).then(|| unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned())
}

/// The `count` items at `array` (NULL or empty gives an empty slice).
///
/// # Safety
/// `array` is NULL or points at `count` initialised items that outlive the returned slice.
unsafe fn slice<'a, T>(array: *mut T, count: usize) -> &'a [T] {
    if array.is_null() || count == 0 {
        return &[];
    }
    // SAFETY: the caller's promise.
    unsafe { std::slice::from_raw_parts(array, count) }
}
