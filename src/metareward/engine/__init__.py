"""The self-judging data engine: responses, judgments, meta-judgments and preference pairs for one iteration."""
