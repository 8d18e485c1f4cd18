// Small helpers both pages share: element lookup and the message line.

import { ApiError } from "./api";

export function byId<T extends HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (!found) throw new Error(`the page has no #${id}`);
  return found as T;
}

/** A human sentence for any failure, from the server's problem answer. */
export function describeProblem(error: unknown): string {
  if (error instanceof ApiError) {
    const p = error.problem;
    switch (p.code) {
      case "network":
        return p.detail ?? "The server cannot be reached.";
      case "unavailable":
        return "The server is busy or cannot store changes right now. Nothing was lost; try again in a moment.";
      case "unauthorized":
        return "This needs you to sign in (or, on the operator page, a valid admin token).";
      case "limit_exceeded":
        return `Too many seats for one customer: ${p.detail ?? "this event limits seats per customer"}.`;
      case "validation_failed":
        return `Please check the form: ${p.detail ?? "a field is invalid"}.`;
      default:
        return p.detail ? `${p.detail} (${p.code})` : `The server answered ${p.status} ${p.code}.`;
    }
  }
  return error instanceof Error ? error.message : String(error);
}

/**
 * Shows one message: a notice (polite status) or a problem (alert). Each
 * replaces the last, so the line always says what just happened.
 */
export function say(text: string, kind: "notice" | "problem" = "notice"): void {
  const notice = byId<HTMLParagraphElement>("notice");
  const problem = byId<HTMLParagraphElement>("problem");
  notice.textContent = kind === "notice" ? text : "";
  problem.textContent = kind === "problem" ? text : "";
}

export function sayProblem(error: unknown): void {
  say(describeProblem(error), "problem");
}

export function sayNothing(): void {
  byId("notice").textContent = "";
  byId("problem").textContent = "";
}
