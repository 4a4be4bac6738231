// The agent loop of README "Reasoning models and tools", driven by the
// openai Node SDK: a reasoning model calls a tool, the client rebuilds the
// assistant turn from ids, names and arguments (as agent frameworks do) and
// sends the tool result. Once from a whole answer, once from a stream
// assembled from its deltas. Exits non-zero on any failure; prints what it
// saw as JSON for the Python test to check.
//
//   TOLLGATE_URL=http://127.0.0.1:8080 TOLLGATE_KEY=vk-... node reasoning_loop.mjs MODEL...
import OpenAI from "openai";

const client = new OpenAI({ baseURL: `${process.env.TOLLGATE_URL}/openai/v1`, apiKey: process.env.TOLLGATE_KEY, maxRetries: 0 });
const tools = [{ type: "function", function: { name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" } } } } }];
const question = [{ role: "user", content: "What is the weather in Paris?" }];

function rebuilt(content, calls) {
  return { role: "assistant", content, tool_calls: calls.map((c) => ({ id: c.id, type: "function", function: { name: c.function.name, arguments: c.function.arguments } })) };
}

async function secondTurn(model, assistant) {
  const results = assistant.tool_calls.map((c) => ({ role: "tool", tool_call_id: c.id, content: "22C" }));
  const answer = await client.chat.completions.create({ model, messages: [...question, assistant, ...results], tools, reasoning_effort: "low" });
  return answer.choices[0].message.content;
}

const out = [];
for (const model of process.argv.slice(2)) {
  const first = await client.chat.completions.create({ model, messages: question, tools, reasoning_effort: "low" });
  const msg = first.choices[0].message;
  const whole = await secondTurn(model, rebuilt(msg.content, msg.tool_calls));

  let content = "", reasoning = "";
  const calls = [];
  const stream = await client.chat.completions.create({ model, messages: question, tools, reasoning_effort: "low", stream: true });
  for await (const chunk of stream) {
    const d = chunk.choices[0]?.delta;
    if (!d) continue;
    content += d.content ?? "";
    reasoning += d.reasoning_content ?? "";
    for (const tc of d.tool_calls ?? []) {
      calls[tc.index] ??= { id: "", function: { name: "", arguments: "" } };
      if (tc.id) calls[tc.index].id = tc.id;
      calls[tc.index].function.name += tc.function?.name ?? "";
      calls[tc.index].function.arguments += tc.function?.arguments ?? "";
    }
  }
  const streamed = await secondTurn(model, rebuilt(content || null, calls));
  out.push({ model, reasoning_content: msg.reasoning_content ?? null, calls: msg.tool_calls.length, whole, streamed_reasoning: reasoning, streamed });
}
console.log(JSON.stringify(out));
