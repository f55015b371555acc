package config

import (
	"strings"
	"testing"
)

func TestValidateSASL(t *testing.T) {
	cases := []struct {
		reason string
		sasl   *SASL
		want   string // "" for valid
	}{
		{"no SASL", nil, ""},
		{"username in the config (Strimzi)", &SASL{Mechanism: "SCRAM-SHA-512", Username: "u", PasswordFile: "/p"}, ""},
		{"username from a file (user-supplied Secret)", &SASL{Mechanism: "SCRAM-SHA-512", UsernameFile: "/u", PasswordFile: "/p"}, ""},
		{"neither username nor usernameFile", &SASL{Mechanism: "SCRAM-SHA-512", PasswordFile: "/p"}, "exactly one of username and usernameFile"},
		{"both username and usernameFile", &SASL{Mechanism: "SCRAM-SHA-512", Username: "u", UsernameFile: "/u", PasswordFile: "/p"}, "exactly one of username and usernameFile"},
		{"no password file", &SASL{Mechanism: "SCRAM-SHA-512", Username: "u"}, "passwordFile is empty"},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			e := &Executor{
				APIVersion: APIVersion, Kafka: Kafka{BootstrapServers: []string{"k:9092"}, SASL: tc.sasl},
				Inputs:  []Input{{Stream: "in", Topic: "in", DeadLetterTopic: "in.dlq"}},
				GroupID: "g",
			}
			e.Default()
			err := e.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate: %v, want valid", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Validate: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
