package sandbox

import "testing"

// TestParseStatus reads the confinement fields of a /proc status file
// and refuses one that lacks them.
func TestParseStatus(t *testing.T) {
	status := "Name:\tmasq\nUmask:\t0022\nCapInh:\t0000000000000000\nCapPrm:\t0000000000002000\n" +
		"CapEff:\t0000000000002000\nCapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\n" +
		"NoNewPrivs:\t1\nSeccomp:\t2\nSeccomp_filters:\t1\n"
	got, err := ParseStatus([]byte(status))
	if err != nil {
		t.Fatal(err)
	}
	want := ThreadStatus{CapPrm: 0x2000, CapEff: 0x2000, CapBnd: 0x1ffffffffff, NoNewPrivs: true, Seccomp: 2}
	if got != want {
		t.Errorf("ParseStatus = %+v, want %+v", got, want)
	}
	if _, err := ParseStatus([]byte("Name:\tmasq\nCapEff:\t0\n")); err == nil {
		t.Error("ParseStatus of a status without the fields: no error")
	}
	if _, err := ParseStatus([]byte(status + "CapEff:\tzz\n")); err == nil {
		t.Error("ParseStatus of a bad CapEff: no error")
	}
}
