//! The [`Task`] and [`Function`] traits and the glue behind
//! [`export_task!`](crate::export_task) and
//! [`export_function!`](crate::export_function).

use std::marker::PhantomData;

use serde_json::Value;

use crate::__private::{function_world, task_world, types};
use crate::{Context, Description, Error, Result};

/// A Task module: backs up and restores one kind of thing.
///
/// Implement it on a unit struct and export it with
/// [`export_task!`](crate::export_task); see the [crate docs](crate) for a
/// complete example.
pub trait Task {
    /// What this task is, its params and needs.
    fn describe() -> Description;

    /// Back up. Artifacts written through [`storage`](crate::storage) form
    /// the run's snapshot, committed only if this returns `Ok`. The JSON
    /// result is kept in the run record.
    ///
    /// # Errors
    ///
    /// An error fails the run; its [`ErrorKind`](crate::ErrorKind) and
    /// message reach the host.
    fn backup(ctx: Context) -> Result<Value>;

    /// Restore from [`Context::snapshot`].
    ///
    /// # Errors
    ///
    /// An error fails the run; its [`ErrorKind`](crate::ErrorKind) and
    /// message reach the host.
    fn restore(ctx: Context) -> Result<Value>;

    /// Clean up outside the repository before the host forgets snapshot
    /// [`Context::snapshot`] (retention, `cairn forget`), for example delete
    /// the Elasticsearch snapshot its notes name. [`storage`](crate::storage)
    /// reads that snapshot's notes and artifacts, as in a restore. The
    /// default does nothing and returns `null`.
    ///
    /// # Errors
    ///
    /// An error makes the host keep the snapshot (and call `forget` again at
    /// the next forget); its message is reported.
    fn forget(ctx: Context) -> Result<Value> {
        let _ = ctx;
        Ok(Value::Null)
    }
}

/// A Function module: one reusable step a task (or a pipeline) calls.
///
/// Implement it on a unit struct and export it with
/// [`export_function!`](crate::export_function).
pub trait Function {
    /// What this function is, its params and needs.
    fn describe() -> Description;

    /// Run the function with JSON `params` (deserialize them with
    /// [`from_params`](crate::from_params)); returns a JSON result.
    ///
    /// # Errors
    ///
    /// An error is returned to the caller with its
    /// [`ErrorKind`](crate::ErrorKind) and message.
    fn call(params: Value) -> Result<Value>;
}

/// Implements the generated `task` world's `Guest` trait for any [`Task`].
#[doc(hidden)]
pub struct TaskExport<T>(PhantomData<T>);

impl<T: Task> task_world::Guest for TaskExport<T> {
    fn describe() -> types::Description {
        T::describe().into_wit()
    }

    fn backup(context: types::Context) -> std::result::Result<String, types::Error> {
        finish(T::backup(Context::from_wit(context)))
    }

    fn restore(context: types::Context) -> std::result::Result<String, types::Error> {
        finish(T::restore(Context::from_wit(context)))
    }

    fn forget(context: types::Context) -> std::result::Result<String, types::Error> {
        finish(T::forget(Context::from_wit(context)))
    }
}

/// Implements the generated `function` world's `Guest` trait for any [`Function`].
#[doc(hidden)]
pub struct FunctionExport<F>(PhantomData<F>);

impl<F: Function> function_world::Guest for FunctionExport<F> {
    fn describe() -> types::Description {
        F::describe().into_wit()
    }

    fn call(params: String) -> std::result::Result<String, types::Error> {
        let params = serde_json::from_str(&params)
            .map_err(|e| Error::invalid(format!("params are not valid JSON: {e}")));
        finish(params.and_then(F::call))
    }
}

fn finish(result: Result<Value>) -> std::result::Result<String, types::Error> {
    result.map(|v| v.to_string()).map_err(Error::into_wit)
}

/// Export a [`Task`] implementation as this component's `cairn:plugin/task`
/// world. Use it once, at the top level of a `cdylib` crate.
///
/// ```ignore
/// struct MyTask;
/// impl cairn_guest::Task for MyTask { /* … */ }
/// cairn_guest::export_task!(MyTask);
/// ```
///
/// See the [crate docs](crate) for a complete task.
#[macro_export]
macro_rules! export_task {
    ($task:ty) => {
        const _: () = {
            type __CairnTaskExport = $crate::__private::TaskExport<$task>;
            $crate::__private::task_world::export_task_world!(
                __CairnTaskExport with_types_in $crate::__private::task_world
            );
        };
    };
}

/// Export a [`Function`] implementation as this component's
/// `cairn:plugin/function` world. Use it once, at the top level of a
/// `cdylib` crate.
///
/// ```standalone_crate,no_run
/// use cairn_guest::{Description, Function, Param, Result, Value, from_params, json};
/// use serde::Deserialize;
///
/// #[derive(Deserialize)]
/// struct Params {
///     a: i64,
///     b: i64,
/// }
///
/// struct Add;
///
/// impl Function for Add {
///     fn describe() -> Description {
///         Description::new("add", "0.1.0")
///             .summary("Adds two numbers")
///             .param(Param::required("a", "First addend"))
///             .param(Param::required("b", "Second addend"))
///     }
///
///     fn call(params: Value) -> Result<Value> {
///         let Params { a, b } = from_params(params)?;
///         let sum = a.checked_add(b).ok_or_else(|| cairn_guest::Error::invalid("overflow"))?;
///         Ok(json!({ "sum": sum }))
///     }
/// }
///
/// cairn_guest::export_function!(Add);
/// ```
#[macro_export]
macro_rules! export_function {
    ($function:ty) => {
        const _: () = {
            type __CairnFunctionExport = $crate::__private::FunctionExport<$function>;
            $crate::__private::function_world::export_function_world!(
                __CairnFunctionExport with_types_in $crate::__private::function_world
            );
        };
    };
}
