// A minimal Cairn task: greets whoever the job's `name` param names.
use cairn_guest::{Context, Description, Param, Result, Task, Value, json, log};
use serde::Deserialize;

#[derive(Deserialize)]
struct Params {
    name: String,
    #[serde(default)]
    excited: bool,
}

struct Hello;

impl Task for Hello {
    fn describe() -> Description {
        Description::new("hello-task", "0.1.0")
            .summary("Greets someone; the smallest useful task")
            .param(Param::required("name", "Who to greet"))
            .param(Param::optional("excited", "End with `!`", json!(false)))
    }

    fn backup(ctx: Context) -> Result<Value> {
        let params: Params = ctx.params()?;
        let mark = if params.excited { "!" } else { "" };
        let greeting = format!("hello, {}{mark}", params.name);
        log::info_with(&greeting, &[("job", &ctx.job()), ("run", &ctx.run_id())]);
        Ok(json!({ "greeting": greeting }))
    }

    fn restore(ctx: Context) -> Result<Value> {
        log::info(format!("nothing to restore from {:?}", ctx.snapshot()));
        Ok(json!({ "restored": false }))
    }
}

cairn_guest::export_task!(Hello);
