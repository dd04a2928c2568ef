//! The `#[trellis::async_test]` attribute. Depend on `trellis` and write `#[trellis::async_test]`: trellis
//! re-exports the attribute (default feature `macros`) and documents it there, with examples.
//!
//! How it works. The attribute turns
//!
//! ```text
//! #[trellis::async_test(flavor = "multi_thread")]
//! #[should_panic]
//! async fn name() -> Ret { body }
//! ```
//!
//! into a plain test that keeps the async fn, as written, inside it:
//!
//! ```text
//! #[::core::prelude::v1::test]
//! #[should_panic]
//! fn name() -> <Ret as ::trellis::testing::__private::TestOutput>::Report {
//!     async fn name() -> Ret { body }
//!     ::trellis::testing::__private::run(
//!         ::trellis::testing::__private::Config::multi_thread(::core::option::Option::None),
//!         ::core::concat!(::core::module_path!(), "::name"),
//!         name,
//!     )
//! }
//! ```
//!
//! The user's tokens are passed through untouched, spans included, so an error in the body or
//! the return type points at the user's code; only the wrapper around them is built from a
//! string. What a runtime is built from each option, and the watchdog, live in
//! `trellis::testing::__private`, so that this crate knows nothing but names. Misuse gives a
//! `compile_error!` spanned at the offending token that says what to write instead.
//!
//! The crate uses the compiler's `proc_macro` API only, without syn or quote, to keep build
//! time low: the input is small (`key = value` pairs, and `[attrs] [pub] async fn name()
//! [-> Ret] { body }`), and a hand-written parser of that shape is short.

use proc_macro::{Delimiter, Group, Ident, Literal, Punct, Spacing, Span, TokenStream, TokenTree};

// Marks an `async fn` as a test that runs on a fresh trellis runtime. Documented on its
// re-export, `trellis::async_test`, with no doc comment here: rustdoc would append it to that page.
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    match Options::parse(args).and_then(|options| expand(&options, item)) {
        Ok(tokens) => tokens,
        Err(error) => error.into_compile_error(),
    }
}

/// A misuse: what to say, and where.
struct Error {
    span: Span,
    message: String,
}

impl Error {
    fn new(span: Span, message: impl Into<String>) -> Error {
        Error {
            span,
            message: message.into(),
        }
    }

    /// `::core::compile_error!("...");`, every token spanned at the offence, so the compiler
    /// underlines the token that is wrong rather than the attribute.
    fn into_compile_error(self) -> TokenStream {
        let span = self.span;
        let punct = |c, spacing| {
            let mut p = Punct::new(c, spacing);
            p.set_span(span);
            TokenTree::Punct(p)
        };
        let ident = |name| TokenTree::Ident(Ident::new(name, span));
        let mut message = Literal::string(&self.message);
        message.set_span(span);
        let mut args = Group::new(
            Delimiter::Parenthesis,
            TokenStream::from(TokenTree::Literal(message)),
        );
        args.set_span(span);
        [
            punct(':', Spacing::Joint),
            punct(':', Spacing::Alone),
            ident("core"),
            punct(':', Spacing::Joint),
            punct(':', Spacing::Alone),
            ident("compile_error"),
            punct('!', Spacing::Alone),
            TokenTree::Group(args),
            punct(';', Spacing::Alone),
        ]
        .into_iter()
        .collect()
    }
}

/// The example every "write this instead" message can end with.
const OPTIONS: &str = "the options are flavor = \"current_thread\" | \"multi_thread\", \
     worker_threads = N, clock = \"mock\" | \"real\", autojump = true | false, \
     detect_deadlocks = true | false, yield_budget = N, schedule_seed = N and timeout_ms = N";

/// The attribute's arguments, each with the span of its key for later complaints. `None`: not
/// given, the default of trellis applies.
#[derive(Default)]
struct Options {
    multi_thread: Option<(bool, Span)>,
    worker_threads: Option<(u64, Span)>,
    /// `true` for the mock clock, `false` for the real one.
    mock_clock: Option<(bool, Span)>,
    autojump: Option<(bool, Span)>,
    detect_deadlocks: Option<(bool, Span)>,
    yield_budget: Option<(u64, Span)>,
    schedule_seed: Option<(u64, Span)>,
    timeout_ms: Option<(u64, Span)>,
}

/// One `key = value` argument.
struct Arg {
    key: Ident,
    /// The value's token, for its span and text.
    value: TokenTree,
}

impl Arg {
    fn value_error(&self, expected: &str) -> Error {
        Error::new(
            self.value.span(),
            format!("`{}` takes {expected}, not `{}`", self.key, self.value),
        )
    }

    /// A string literal among `choices`, by its index.
    fn choice(&self, choices: &[&str]) -> Result<usize, Error> {
        let listed = choices
            .iter()
            .map(|c| format!("\"{c}\""))
            .collect::<Vec<_>>()
            .join(" or ");
        let text = self.value.to_string();
        text.strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .and_then(|t| choices.iter().position(|c| *c == t))
            .ok_or_else(|| self.value_error(&listed))
    }

    fn boolean(&self) -> Result<bool, Error> {
        match &self.value {
            TokenTree::Ident(i) if i.to_string() == "true" => Ok(true),
            TokenTree::Ident(i) if i.to_string() == "false" => Ok(false),
            _ => Err(self.value_error("`true` or `false`")),
        }
    }

    /// A whole number in `min..=max`, written in decimal (`_` separators allowed).
    fn number(&self, min: u64, max: u64, what: &str) -> Result<u64, Error> {
        let expected = if max == u64::MAX {
            format!("{what}, a whole number of at least {min}")
        } else {
            format!("{what}, a whole number from {min} to {max}")
        };
        let TokenTree::Literal(_) = &self.value else {
            return Err(self.value_error(&expected));
        };
        let digits: String = self
            .value
            .to_string()
            .chars()
            .filter(|&c| c != '_')
            .collect();
        match digits.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(self.value_error(&expected)),
        }
    }
}

impl Options {
    fn parse(args: TokenStream) -> Result<Options, Error> {
        let mut options = Options::default();
        let mut tokens = args.into_iter().peekable();
        while let Some(token) = tokens.next() {
            let TokenTree::Ident(key) = token else {
                return Err(Error::new(
                    token.span(),
                    format!("expected an option name, found `{token}`; {OPTIONS}"),
                ));
            };
            let write_instead = || {
                Error::new(
                    key.span(),
                    format!(
                        "write `{key} = value`, e.g. #[trellis::async_test(timeout_ms = 5000)]"
                    ),
                )
            };
            match tokens.next() {
                Some(TokenTree::Punct(p)) if p.as_char() == '=' => {}
                _ => return Err(write_instead()),
            }
            let value = tokens.next().ok_or_else(write_instead)?;
            let arg = Arg { key, value };
            options.set(&arg)?;
            match tokens.next() {
                None => break,
                Some(TokenTree::Punct(p)) if p.as_char() == ',' => {}
                Some(other) => {
                    return Err(Error::new(
                        other.span(),
                        format!("expected `,` between options, found `{other}`"),
                    ))
                }
            }
        }
        options.check()?;
        Ok(options)
    }

    /// Records one argument, refusing unknown keys, bad values and repeats.
    fn set(&mut self, arg: &Arg) -> Result<(), Error> {
        let span = arg.key.span();
        let key = arg.key.to_string();
        let slot_taken = |taken: bool| {
            if taken {
                Err(Error::new(
                    span,
                    format!("`{key}` is given twice; keep one"),
                ))
            } else {
                Ok(())
            }
        };
        match key.as_str() {
            "flavor" => {
                slot_taken(self.multi_thread.is_some())?;
                let multi = arg.choice(&["current_thread", "multi_thread"])? == 1;
                self.multi_thread = Some((multi, span));
            }
            "worker_threads" => {
                slot_taken(self.worker_threads.is_some())?;
                let n = arg.number(1, 1 << 16, "a number of threads")?;
                self.worker_threads = Some((n, span));
            }
            "clock" => {
                slot_taken(self.mock_clock.is_some())?;
                let mock = arg.choice(&["mock", "real"])? == 0;
                self.mock_clock = Some((mock, span));
            }
            "autojump" => {
                slot_taken(self.autojump.is_some())?;
                self.autojump = Some((arg.boolean()?, span));
            }
            "detect_deadlocks" => {
                slot_taken(self.detect_deadlocks.is_some())?;
                self.detect_deadlocks = Some((arg.boolean()?, span));
            }
            "yield_budget" => {
                slot_taken(self.yield_budget.is_some())?;
                let n = arg.number(0, u32::MAX.into(), "a number of operations")?;
                self.yield_budget = Some((n, span));
            }
            "schedule_seed" => {
                slot_taken(self.schedule_seed.is_some())?;
                let n = arg.number(0, u64::MAX, "a seed (any number)")?;
                self.schedule_seed = Some((n, span));
            }
            "timeout_ms" => {
                slot_taken(self.timeout_ms.is_some())?;
                let n = arg.number(1, u64::MAX, "milliseconds of real time")?;
                self.timeout_ms = Some((n, span));
            }
            _ => {
                return Err(Error::new(
                    span,
                    format!("unknown option `{key}`; {OPTIONS}"),
                ))
            }
        }
        Ok(())
    }

    /// Refuses combinations that mean nothing, or that the runtime would refuse.
    fn check(&self) -> Result<(), Error> {
        let multi = matches!(self.multi_thread, Some((true, _)));
        if let (false, Some((_, span))) = (multi, self.worker_threads) {
            return Err(Error::new(
                span,
                "worker_threads sets the threads of the multi-threaded flavour: add \
                 flavor = \"multi_thread\", or drop worker_threads (the current-thread flavour \
                 runs on the test's own thread)",
            ));
        }
        if let (true, Some((true, span))) = (multi, self.detect_deadlocks) {
            return Err(Error::new(
                span,
                "deadlock detection needs the current-thread flavour: drop \
                 detect_deadlocks = true, or flavor = \"multi_thread\"",
            ));
        }
        if let (true, Some((_, span))) = (multi, self.schedule_seed) {
            return Err(Error::new(
                span,
                "a schedule seed orders the tasks of the current-thread flavour: drop \
                 schedule_seed, or flavor = \"multi_thread\"",
            ));
        }
        let mock = self.mock_clock.map_or(!multi, |(mock, _)| mock);
        if let (false, Some((_, span))) = (mock, self.autojump) {
            return Err(Error::new(
                span,
                if multi {
                    "autojump moves the mock clock, and the multi-threaded flavour runs on the \
                     real one by default: add clock = \"mock\", or drop autojump"
                } else {
                    "autojump moves the mock clock: drop autojump, or clock = \"real\""
                },
            ));
        }
        Ok(())
    }

    /// The expression that builds `trellis::testing::__private::Config`: the flavour's
    /// defaults, then each option given.
    fn config_expr(&self) -> String {
        let path = "::trellis::testing::__private::Config";
        let mut expr = match (self.multi_thread, self.worker_threads) {
            (Some((true, _)), Some((n, _))) => {
                format!("{path}::multi_thread(::core::option::Option::Some({n}))")
            }
            (Some((true, _)), None) => {
                format!("{path}::multi_thread(::core::option::Option::None)")
            }
            _ => format!("{path}::current_thread()"),
        };
        if let Some((mock, _)) = self.mock_clock {
            expr += if mock {
                ".mock_clock()"
            } else {
                ".real_clock()"
            };
        }
        if let Some((on, _)) = self.autojump {
            expr += &format!(".autojump({on})");
        }
        if let Some((on, _)) = self.detect_deadlocks {
            expr += &format!(".detect_deadlocks({on})");
        }
        if let Some((n, _)) = self.yield_budget {
            expr += &format!(".yield_budget({n})");
        }
        if let Some((n, _)) = self.schedule_seed {
            expr += &format!(".schedule_seed({n})");
        }
        if let Some((n, _)) = self.timeout_ms {
            expr += &format!(".timeout_ms({n})");
        }
        expr
    }
}

/// The pieces of `[attrs] [pub] async fn name() [-> Ret] { body }`, as token streams.
struct TestFn {
    attrs: TokenStream,
    vis: TokenStream,
    /// `async fn name() [-> Ret] { body }`, exactly as written.
    async_fn: TokenStream,
    name: Ident,
    /// The return type's tokens; `None` for none or `()`.
    output: Option<TokenStream>,
}

fn is_ident(token: Option<&TokenTree>, name: &str) -> bool {
    matches!(token, Some(TokenTree::Ident(i)) if i.to_string() == name)
}

fn is_punct(token: Option<&TokenTree>, c: char) -> bool {
    matches!(token, Some(TokenTree::Punct(p)) if p.as_char() == c)
}

impl TestFn {
    fn parse(item: TokenStream) -> Result<TestFn, Error> {
        let tokens: Vec<TokenTree> = item.into_iter().collect();
        let not_a_fn = |span| {
            Error::new(
                span,
                "#[trellis::async_test] goes on an `async fn name() { ... }` (or one that returns a \
                 Result)",
            )
        };
        let mut i = 0;
        // Attributes: `#` and a bracket group, each. A `#[test]` among them would make a
        // second test.
        while is_punct(tokens.get(i), '#') {
            let Some(TokenTree::Group(attr)) = tokens.get(i + 1) else {
                return Err(not_a_fn(tokens[i].span()));
            };
            let inner: Vec<TokenTree> = attr.stream().into_iter().collect();
            if inner.len() == 1 && is_ident(inner.first(), "test") {
                return Err(Error::new(
                    inner[0].span(),
                    "remove this #[test]: #[trellis::async_test] already makes the function a test",
                ));
            }
            i += 2;
        }
        let attrs = tokens[..i].iter().cloned().collect();
        let vis_start = i;
        if is_ident(tokens.get(i), "pub") {
            i += 1;
            if let Some(TokenTree::Group(g)) = tokens.get(i) {
                if g.delimiter() == Delimiter::Parenthesis {
                    i += 1;
                }
            }
        }
        let vis = tokens[vis_start..i].iter().cloned().collect();
        let fn_start = i;
        let mut is_async = false;
        loop {
            match tokens.get(i) {
                Some(TokenTree::Ident(q)) if q.to_string() == "async" => is_async = true,
                Some(TokenTree::Ident(q))
                    if ["const", "unsafe", "extern"].contains(&q.to_string().as_str()) =>
                {
                    return Err(Error::new(
                        q.span(),
                        format!("a test is a plain `async fn`: remove `{q}`"),
                    ));
                }
                Some(TokenTree::Ident(f)) if f.to_string() == "fn" => break,
                Some(other) => return Err(not_a_fn(other.span())),
                None => return Err(not_a_fn(Span::call_site())),
            }
            i += 1;
        }
        let fn_token = tokens[i].span();
        let Some(TokenTree::Ident(name)) = tokens.get(i + 1).cloned() else {
            return Err(not_a_fn(fn_token));
        };
        if !is_async {
            return Err(Error::new(
                fn_token,
                format!(
                    "#[trellis::async_test] runs an async fn: write `async fn {name}()`; a test \
                     without `.await` takes a plain #[test]"
                ),
            ));
        }
        i += 2;
        if is_punct(tokens.get(i), '<') {
            return Err(Error::new(
                tokens[i].span(),
                "a test fn takes no generic parameters: remove them",
            ));
        }
        match tokens.get(i) {
            Some(TokenTree::Group(params)) if params.delimiter() == Delimiter::Parenthesis => {
                if let Some(first) = params.stream().into_iter().next() {
                    return Err(Error::new(
                        first.span(),
                        format!(
                            "a test fn takes no arguments: write `async fn {name}()` and \
                             create what the test needs in its body"
                        ),
                    ));
                }
            }
            Some(other) => return Err(not_a_fn(other.span())),
            None => return Err(not_a_fn(name.span())),
        }
        i += 1;
        // The body is the last token, a brace group; a return type is what lies between
        // `->` and it.
        let body_at = tokens.len() - 1;
        match tokens.last() {
            Some(TokenTree::Group(body))
                if body.delimiter() == Delimiter::Brace && body_at >= i => {}
            _ => return Err(not_a_fn(name.span())),
        }
        let output = if i == body_at {
            None
        } else if is_punct(tokens.get(i), '-') && is_punct(tokens.get(i + 1), '>') {
            let ret: Vec<TokenTree> = tokens[i + 2..body_at].to_vec();
            let is_unit = matches!(ret.as_slice(),
                [TokenTree::Group(g)] if g.delimiter() == Delimiter::Parenthesis
                    && g.stream().is_empty());
            if ret.is_empty() {
                return Err(not_a_fn(tokens[i + 1].span()));
            }
            (!is_unit).then(|| ret.into_iter().collect())
        } else {
            return Err(not_a_fn(tokens[i].span()));
        };
        Ok(TestFn {
            attrs,
            vis,
            async_fn: tokens[fn_start..].iter().cloned().collect(),
            name,
            output,
        })
    }
}

/// Parses a piece of the wrapper written as a string. The pieces are constant Rust with
/// balanced delimiters, so this cannot fail.
fn code(text: &str) -> TokenStream {
    text.parse().expect("the wrapper's code parses")
}

/// `tokens` with every span set to `span`.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut token| {
            if let TokenTree::Group(g) = &token {
                token = TokenTree::Group(Group::new(g.delimiter(), respan(g.stream(), span)));
            }
            token.set_span(span);
            token
        })
        .collect()
}

fn expand(options: &Options, item: TokenStream) -> Result<TokenStream, Error> {
    let test = TestFn::parse(item)?;
    let name = &test.name;
    let name_text = name.to_string();
    let name_text = name_text.strip_prefix("r#").unwrap_or(&name_text);

    let mut args = code(&format!(
        "{config}, ::core::concat!(::core::module_path!(), \"::{name_text}\"),",
        config = options.config_expr(),
    ));
    args.extend([TokenTree::Ident(name.clone())]);
    let mut body = test.async_fn;
    body.extend(code("::trellis::testing::__private::run"));
    body.extend([TokenTree::Group(Group::new(Delimiter::Parenthesis, args))]);

    let mut out = code("#[::core::prelude::v1::test]");
    out.extend(test.attrs);
    out.extend(test.vis);
    out.extend(code("fn"));
    out.extend([TokenTree::Ident(name.clone())]);
    out.extend(code("()"));
    if let Some(output) = test.output {
        // Located at the user's return type, so that a type that is no test output is
        // reported there.
        let span = output
            .clone()
            .into_iter()
            .next()
            .map_or_else(Span::call_site, |t| Span::call_site().located_at(t.span()));
        out.extend(respan(code("-> <"), span));
        out.extend(output);
        out.extend(respan(
            code("as ::trellis::testing::__private::TestOutput>::Report"),
            span,
        ));
    }
    out.extend([TokenTree::Group(Group::new(Delimiter::Brace, body))]);
    Ok(out)
}
