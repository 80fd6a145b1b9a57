// Command sleeper is the process of the test image: it prints
// $RM_TEST_PRINT, optionally its working directory and environment
// (RM_TEST_SHOW=1), sleeps $RM_TEST_SLEEP seconds and exits with
// $RM_TEST_EXIT. SIGTERM ends it at once with 143, as a shell would.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"syscall"
	"time"
)

func main() {
	if p := os.Getenv("RM_TEST_PRINT"); p != "" {
		fmt.Println(p)
	}
	if os.Getenv("RM_TEST_SHOW") == "1" {
		wd, _ := os.Getwd()
		fmt.Println("wd=" + wd)
		env := os.Environ()
		sort.Strings(env)
		for _, e := range env {
			fmt.Println("env " + e)
		}
		fmt.Println("args", os.Args[1:])
	}
	secs, _ := strconv.ParseFloat(os.Getenv("RM_TEST_SLEEP"), 64)
	code, _ := strconv.Atoi(os.Getenv("RM_TEST_EXIT"))
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-time.After(time.Duration(secs * float64(time.Second))):
		os.Exit(code)
	case s := <-sig:
		fmt.Println("got", s)
		os.Exit(128 + int(s.(syscall.Signal)))
	}
}
