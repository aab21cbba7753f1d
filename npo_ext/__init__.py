"""NPO algorithm pieces with no training engine inside: guidance injection, Q/V/S signals, the fork state machine."""
