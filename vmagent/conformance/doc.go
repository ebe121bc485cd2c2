// Package conformance holds one test, run against the simulated VM agent
// (vmagent/sim) and against the real, unmodified agent binary (booted by
// vmagent/realagent in its sandbox): the same contract checks, driven
// through tdf's own vmagent.Client, for every answer and callback tdf
// depends on. Where the two disagree the real agent is right and the
// simulator is fixed.
package conformance
