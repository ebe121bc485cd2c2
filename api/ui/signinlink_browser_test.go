package ui_test

import (
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tdf-project/tdf/server"
)

// The sign-in link tdf dev prints (/ui/#token=…) signs a secure-by-default
// cluster's dashboard in with the bootstrap admin token, and the token
// leaves the address bar at once (it stays in the tab's storage only).
func TestDashboardSignInLink(t *testing.T) {
	chrome := chromium()
	if chrome == "" {
		t.Skip("no Chromium found; install one (apt-get install chromium) to run the dashboard's browser test")
	}
	c := server.NewTestCluster(t, server.TestOptions{Nodes: 1, Secure: true})
	admin := c.AdminToken()
	b := startBrowser(t, chrome)
	b.do("open the sign-in link", chromedp.Navigate(c.Nodes[0].URL+"/ui/#token="+admin))
	b.wait("the dashboard signed in as the admin, the token out of the URL", 20*time.Second, `(() => {
		const who = document.querySelector('#who-subject')?.textContent;
		const conn = document.querySelector('#conn')?.dataset.state;
		return { ok: who === 'admin' && conn === 'live' && !location.href.includes('token') && !document.querySelector('#login-token'),
			state: { who, conn, href: location.href.replace(/tdf_[^&]*/, 'tdf_…') } };
	})()`)
	b.check()
}
