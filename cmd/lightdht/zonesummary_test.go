package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestZoneSummary: a zone crawl's summary gives the estimate of the
// answering nodes first, then that of every contact listed, each with its
// 95% interval.
func TestZoneSummary(t *testing.T) {
	var b bytes.Buffer
	printSummary(&b, crawlSummary{SizeEstimate: 1_036_288, SizeLow: 1_003_000, SizeHigh: 1_070_000, ZoneAnswering: 1797,
		AnsweringEstimate: 460_032, AnsweringLow: 439_288, AnsweringHigh: 481_756})
	for _, want := range []string{
		"size estimate:  460032 nodes answering (95%: 439288 to 481756, from 1797 answering in the zone)\n",
		"                1036288 nodes listed, answering or not (95%: 1003000 to 1070000)\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, b.String())
		}
	}
}

// TestChecksSummary: the summary says how many nodes the second pass
// asked again, and how many it left once the checks stopped finding
// nodes; a crawl without a second pass says nothing of it.
func TestChecksSummary(t *testing.T) {
	var b bytes.Buffer
	printSummary(&b, crawlSummary{Checks: 2567, ChecksLeft: 16785})
	if want := "checks:         2567 nodes asked again for their nearest neighbours, 16785 left (the last asked found no new node)\n"; !strings.Contains(b.String(), want) {
		t.Errorf("summary lacks %q:\n%s", want, b.String())
	}
	b.Reset()
	printSummary(&b, crawlSummary{Checks: 12})
	if want := "checks:         12 nodes asked again for their nearest neighbours\n"; !strings.Contains(b.String(), want) {
		t.Errorf("summary lacks %q:\n%s", want, b.String())
	}
	b.Reset()
	printSummary(&b, crawlSummary{})
	if strings.Contains(b.String(), "checks:") {
		t.Errorf("a crawl without checks reports them:\n%s", b.String())
	}
}

// TestResendsSummary: the summary says how many queries were resent
// after a timeout, and how many of those were held back at first; a
// crawl that resent nothing says nothing of it.
func TestResendsSummary(t *testing.T) {
	var b bytes.Buffer
	printSummary(&b, crawlSummary{Resends: 1200})
	if want := "resends:        1200 after a timeout\n"; !strings.Contains(b.String(), want) {
		t.Errorf("summary lacks %q:\n%s", want, b.String())
	}
	b.Reset()
	printSummary(&b, crawlSummary{Resends: 10981, Redeemed: 6359})
	if want := "resends:        10981 after a timeout, 6359 of them held back until resends were seen to be answered\n"; !strings.Contains(b.String(), want) {
		t.Errorf("summary lacks %q:\n%s", want, b.String())
	}
	b.Reset()
	printSummary(&b, crawlSummary{})
	if strings.Contains(b.String(), "resends:") {
		t.Errorf("a crawl without resends reports them:\n%s", b.String())
	}
}
