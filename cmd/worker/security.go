package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/internal/cost"
	"github.com/aibatch/aibatch/internal/fleet"
)

// What a producer may ask of the worker: where its result goes
// (REPLY_SUBJECTS), which model it is paid for (ALLOWED_MODELS), how long
// an answer it may ask for (MAX_OUTPUT_TOKENS_LIMIT) and how many tokens its
// topic may spend in a day (TOPIC_BUDGETS). docs/security.md explains them.

// validateSecurity checks REPLY_SUBJECTS, ALLOWED_MODELS,
// MAX_OUTPUT_TOKENS_LIMIT and TOPIC_BUDGETS.
func (c config) validateSecurity() []error {
	var errs []error
	for _, f := range c.ReplySubjects {
		if !server.IsValidSubject(f) || strings.HasPrefix(f, "$") {
			errs = append(errs, fmt.Errorf("REPLY_SUBJECTS=%s: %q is not a subject filter a result may go to; want filters separated by commas, such as ai.results.>,_INBOX.>, or > for any subject", strings.Join(c.ReplySubjects, ","), f))
		}
	}
	for _, m := range c.AllowedModels {
		if strings.TrimSpace(m) == "" || strings.TrimSpace(m) != m {
			errs = append(errs, fmt.Errorf("ALLOWED_MODELS=%s: want model names separated by commas, such as gpt-4o-mini,gpt-4o, or * for any model; empty means MODEL and the models in PRICES", strings.Join(c.AllowedModels, ",")))
			break
		}
	}
	if c.MaxOutputTokensLimit < 0 || c.MaxOutputTokensLimit > 10_000_000 {
		errs = append(errs, fmt.Errorf("MAX_OUTPUT_TOKENS_LIMIT=%d: want 0 (no limit but the model's own) or the most max_output_tokens a request may ask for, up to 10000000", c.MaxOutputTokensLimit))
	}
	budgets, err := parseTopicBudgets(c.TopicBudgets)
	switch {
	case err != nil:
		errs = append(errs, err)
	case len(budgets) > 0 && c.StatsBucket == "":
		errs = append(errs, errors.New("TOPIC_BUDGETS is set but STATS_BUCKET is empty: the budgets are kept in the fleet's bucket; set STATS_BUCKET (default AI_STATS)"))
	}
	return errs
}

// allowedModels is ALLOWED_MODELS, or when it is empty MODEL and the models
// priced in PRICES, sorted.
func (c config) allowedModels() []string {
	if len(c.AllowedModels) > 0 {
		return c.AllowedModels
	}
	models := []string{c.Model}
	prices, err := cost.ParsePrices(c.Prices)
	if err != nil {
		return models
	}
	for m := range prices {
		if m != c.Model {
			models = append(models, m)
		}
	}
	slices.Sort(models[1:])
	return models
}

// withBudgets adds the engine option of TOPIC_BUDGETS, kept in the fleet's
// bucket (STATS_BUCKET), when any is set.
func withBudgets(ctx context.Context, cfg config, js jetstream.JetStream, opts []batch.Option) ([]batch.Option, error) {
	limits := must(parseTopicBudgets(cfg.TopicBudgets))
	if len(limits) == 0 {
		return opts, nil
	}
	totals, err := fleet.Open(ctx, js, fleet.Config{Bucket: cfg.StatsBucket, Replicas: cfg.StreamReplicas})
	if err != nil {
		return nil, fmt.Errorf("set up TOPIC_BUDGETS in STATS_BUCKET=%s: %w", cfg.StatsBucket, err)
	}
	budgets, err := fleet.OpenBudgets(totals, fleet.BudgetConfig{Limits: limits})
	if err != nil {
		return nil, fmt.Errorf("set up TOPIC_BUDGETS: %w", err)
	}
	return append(opts, batch.WithBudget(budgets)), nil
}

// parseTopicBudgets reads TOPIC_BUDGETS: "topic=tokens,..." with tokens per
// UTC day, a whole number of 1 or more; empty is none.
func parseTopicBudgets(v string) (map[string]int64, error) {
	if strings.TrimSpace(v) == "" {
		return nil, nil
	}
	budgets := map[string]int64{}
	for pair := range strings.SplitSeq(v, ",") {
		topic, tokens, ok := strings.Cut(strings.TrimSpace(pair), "=")
		topic = strings.TrimSpace(topic)
		n, err := strconv.ParseInt(strings.TrimSpace(tokens), 10, 64)
		if !ok || !fleet.ValidBudgetTopic(topic) || err != nil || n < 1 {
			return nil, fmt.Errorf("TOPIC_BUDGETS=%s: want topic=tokens pairs separated by commas: a topic of letters, digits, -, _ and dots (the subject tokens after ai.requests. or ai.urgent.), and its tokens per UTC day, a whole number of 1 or more, such as billing=2000000,support.eu=500000", v)
		}
		if _, dup := budgets[topic]; dup {
			return nil, fmt.Errorf("TOPIC_BUDGETS=%s: topic %q has two budgets", v, topic)
		}
		budgets[topic] = n
	}
	return budgets, nil
}
