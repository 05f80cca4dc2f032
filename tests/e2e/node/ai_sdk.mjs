// The Vercel AI SDK's openai() provider (the Responses API) against the gateway, unmodified.
// Usage: node ai_sdk.mjs BASE_URL MODEL text|stream|tools PROMPT ; prints one JSON line with what came back.
import { createOpenAI } from "@ai-sdk/openai";
import { generateText, stepCountIs, streamText, tool } from "ai";
import { z } from "zod";

const [baseURL, modelId, mode, prompt, toolResult] = process.argv.slice(2);
const model = createOpenAI({ baseURL, apiKey: "unused" })(modelId);

async function run() {
  if (mode === "text") {
    const result = await generateText({ model, prompt, maxRetries: 0 });
    return { text: result.text, finishReason: result.finishReason, usage: result.usage };
  }
  if (mode === "stream") {
    const result = streamText({ model, prompt, maxRetries: 0 });
    const deltas = [];
    for await (const delta of result.textStream) deltas.push(delta);
    return { deltas, text: await result.text, finishReason: await result.finishReason };
  }
  const calls = [];
  const getWeather = tool({
    description: "The weather in a city",
    inputSchema: z.object({ city: z.string() }),
    execute: async ({ city }) => {
      calls.push(city);
      return toolResult;
    },
  });
  const result = await generateText({
    model,
    prompt,
    tools: { get_weather: getWeather },
    stopWhen: stepCountIs(3),
    maxRetries: 0,
  });
  return { text: result.text, calls, steps: result.steps.length, finishReason: result.finishReason };
}

run().then(
  (result) => console.log(JSON.stringify(result)),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
