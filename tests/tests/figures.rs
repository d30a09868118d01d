//! Every committed figure in `src/img/` is exactly what the figure program draws from the
//! crate's current numbers, and every figure a chapter shows is one the program draws.

use std::fs;

use book_tests::{figures, workspace_root};

#[test]
fn committed_figures_are_up_to_date() {
    let dir = std::env::temp_dir().join(format!("book-figures-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let mut stale = Vec::new();
    for fig in figures::ALL {
        let fresh = dir.join(fig.file);
        (fig.render)(&fresh).unwrap_or_else(|e| panic!("{}: {e}", fig.file));
        let committed = workspace_root().join("src/img").join(fig.file);
        if fs::read(&committed).ok() != Some(fs::read(&fresh).unwrap()) {
            stale.push(fig.file);
        }
    }
    fs::remove_dir_all(&dir).ok();
    assert!(
        stale.is_empty(),
        "stale or missing figures in src/img: {stale:?}; run `cargo run -p book-tests --bin figures` and commit them"
    );
}

#[test]
fn every_figure_in_src_img_is_generated_and_shown() {
    let generated: Vec<&str> = figures::ALL.iter().map(|f| f.file).collect();
    let chapters: String = fs::read_dir(workspace_root().join("src"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .map(|p| fs::read_to_string(p).unwrap())
        .collect();
    for entry in fs::read_dir(workspace_root().join("src/img")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if !name.ends_with(".svg") {
            continue; // e.g. the README's screenshot of a rendered page, which is no figure
        }
        assert!(
            generated.contains(&name.as_str()),
            "src/img/{name} is not drawn by the figure program"
        );
    }
    for file in generated {
        assert!(
            chapters.contains(&format!("img/{file}")),
            "figure {file} is not shown by any chapter"
        );
    }
}
